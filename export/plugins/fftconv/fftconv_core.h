// hyena::FFTConv -- CPU core shared by the TensorRT plugin and the CUDA kernels.
//
// Pure C++17: no TensorRT, no CUDA. It owns everything about the op that can be decided
// on a CPU: attribute parsing and validation, the FFT/crop geometry for a concrete input
// shape, the output shape rule, the workspace layout, the cuFFT plan key and the
// versioned byte serialisation of the attributes. Errors are returned as Result values;
// nothing in this file throws across its API (allocation failure aside, which callers
// at an ABI boundary catch).
//
// The op contract (names shared with hyena_serve/contract.py):
//   inputs  X  (N, C, H, W) float32 | float16
//           Kf float32, (C, Nh, Nw/2+1, 2) in mode "2d", (C, N/2+1, 2) in mode "1d_bidir":
//              the half spectrum of the zero-padded filter, real/imag interleaved.
//           D  (C,) float32 skip.
//   fields  mode "2d" | "2d_circular" | "1d_bidir"; kernel_size [Kh, Kw] | [K]; fft_size [Nh, Nw] | [N];
//           spatial_size [H, W] | [L] (optional: only checked in 2d_circular, where it must equal fft_size).
//   output  Y with X's shape and dtype:
//     2d:          Y[b,c,i,j] = irfft2(rfft2(pad(x[b,c])) * Kf[c])[i + Kh/2, j + Kw/2] + D[c] x[b,c,i,j]
//     2d_circular: transform size = map size (fft_size == kernel_size == (H, W)), no padding, no crop:
//                  Y[b,c] = irfft2(rfft2(x[b,c]) * Kf[c]) + D[c] x[b,c]  (crop start 0)
//     1d_bidir:    the (H, W) map is flattened to L = H*W and the same is done in 1-D with K/2.
#ifndef HYENA_FFTCONV_CORE_H
#define HYENA_FFTCONV_CORE_H

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

// Element-index helpers below are shared with the CUDA kernels (and exercised on the CPU
// by the core test), so they are __host__ __device__ when compiled by nvcc.
#if defined(__CUDACC__)
#define FFTCONV_HOST_DEVICE __host__ __device__
#define FFTCONV_HD __host__ __device__ __forceinline__
#else
#define FFTCONV_HOST_DEVICE
#define FFTCONV_HD inline
#endif

namespace hyena
{
namespace fftconv
{

// ---- names of the contract ----------------------------------------------------------
constexpr char const* kPluginName = "FFTConv";
constexpr char const* kPluginNamespace = "hyena";
constexpr char const* kPluginVersion = "1";
constexpr char const* kFieldMode = "mode";
constexpr char const* kFieldKernelSize = "kernel_size";
constexpr char const* kFieldFftSize = "fft_size";
//! On the ONNX node for every mode; the plugin only reads it in 2d_circular (it must equal fft_size).
constexpr char const* kFieldSpatialSize = "spatial_size";
//! Extra field written into engines: the versioned attribute blob (bytes).
constexpr char const* kFieldState = "hyena_fftconv_state";
constexpr char const* kModeName2D = "2d";
constexpr char const* kModeName1DBidir = "1d_bidir";
constexpr char const* kModeName2DCircular = "2d_circular";

constexpr int32_t kNbInputs = 3; // X, Kf, D
constexpr int32_t kNbOutputs = 1; // Y
constexpr int32_t kInputX = 0;
constexpr int32_t kInputKf = 1;
constexpr int32_t kInputD = 2;

//! Largest FFT length per dimension accepted (cuFFT's int API; generous for the model family).
constexpr int64_t kMaxFftLength = int64_t{1} << 24;
//! Alignment (bytes) of each buffer carved out of the TensorRT workspace.
constexpr size_t kWorkspaceAlignment = 256;

// ---- status ---------------------------------------------------------------------------
enum class Status : int32_t
{
    kOk = 0,
    kInvalidAttribute = 1,
    kInvalidShape = 2,
    kUnsupportedType = 3,
    kCorruptBuffer = 4,
    kInternal = 5,
};

char const* statusName(Status s) noexcept;

struct Result
{
    Status status{Status::kOk};
    std::string message;

    bool ok() const noexcept { return status == Status::kOk; }
    static Result success() { return Result{}; }
    static Result error(Status s, std::string msg) { return Result{s, std::move(msg)}; }
};

// ---- attributes -------------------------------------------------------------------------
enum class Mode : int32_t
{
    k2D = 0,
    k1DBidir = 1,
    k2DCircular = 2, //!< GFNet-style global filter: circular convolution at the map size
};

char const* modeName(Mode m) noexcept;
Result parseMode(std::string const& text, Mode& out);
//! Number of FFT dimensions of a mode (2 for "2d" and "2d_circular", 1 for "1d_bidir").
int32_t modeRank(Mode m) noexcept;

struct Attributes
{
    Mode mode{Mode::k2D};
    std::vector<int32_t> kernelSize; //!< [Kh, Kw] or [K]
    std::vector<int32_t> fftSize;    //!< [Nh, Nw] or [N]

    bool operator==(Attributes const& o) const
    {
        return mode == o.mode && kernelSize == o.kernelSize && fftSize == o.fftSize;
    }
    bool operator!=(Attributes const& o) const { return !(*this == o); }
};

//! One named field as handed over by a plugin creator (or a test): a string, an integer
//! list or raw bytes. The TensorRT glue converts PluginFields into this.
struct AttrValue
{
    enum class Kind : int32_t
    {
        kString,
        kInts,
        kBytes,
    };
    Kind kind{Kind::kInts};
    std::string str;
    std::vector<int64_t> ints;
    std::vector<uint8_t> bytes;

    static AttrValue makeString(std::string s);
    static AttrValue makeInts(std::vector<int64_t> v);
    static AttrValue makeBytes(std::vector<uint8_t> b);
};
using AttrMap = std::map<std::string, AttrValue>;

//! Checks mode/kernel_size/fft_size on their own (no input shape needed). 2d_circular needs
//! kernel_size == fft_size (the filter covers the whole map).
Result validateAttributes(Attributes const& a);

//! Builds Attributes from named fields. If kFieldState is present, the blob is decoded
//! (and, when the plain fields are present too, they must agree with it). Otherwise
//! mode, kernel_size and fft_size are required. Unknown names are ignored (the ONNX
//! node carries plugin_namespace/plugin_version, which are not fields of this op).
//! spatial_size, when present, must equal fft_size in 2d_circular; the linear modes take
//! the map size from X's shape and ignore it.
Result parseAttributes(AttrMap const& fields, Attributes& out);

// ---- tensors, shapes, geometry -------------------------------------------------------
enum class DType : int32_t
{
    kFloat32 = 0,
    kFloat16 = 1,
    kOther = 2,
};

//! A tensor as the planner sees it; a dimension of -1 is "not known yet" (build time).
struct TensorInfo
{
    std::vector<int64_t> dims;
    DType type{DType::kFloat32};
};

//! Kf's expected shape for `channels` channels (channels may be -1 = unknown).
std::vector<int64_t> expectedKfShape(Attributes const& a, int64_t channels);

//! Validates X, Kf, D against the attributes. Unknown (-1) dims are skipped; known
//! spatial dims must satisfy the alias-free rule fft >= n + k/2 per FFT dimension in the
//! linear modes, and equal fft_size in 2d_circular.
Result checkInputs(Attributes const& a, TensorInfo const& x, TensorInfo const& kf, TensorInfo const& d);

//! Output shape rule: Y has X's shape (rank 4). -1 dims pass through.
Result outputShape(std::vector<int64_t> const& xDims, std::vector<int64_t>& out);

//! Concrete geometry of one launch. "Signals" are the N*C independent (b, c) planes. In
//! 1d_bidir mode the plane is viewed as one row of L = H*W samples, so both modes share
//! the same kernels: rows=1, fftRows=1, cropRow=0.
struct Geometry
{
    int32_t rank;     //!< FFT rank: 2 ("2d") or 1 ("1d_bidir")
    int64_t batch;    //!< N
    int64_t channels; //!< C
    int64_t rows;     //!< H (2d, 2d_circular) or 1
    int64_t cols;     //!< W (2d) or H*W
    int64_t fftRows;  //!< Nh (2d) or 1
    int64_t fftCols;  //!< Nw (2d) or N
    int64_t specCols; //!< fftCols/2 + 1
    int64_t cropRow;  //!< Kh/2 (2d) or 0 (1d_bidir, 2d_circular)
    int64_t cropCol;  //!< Kw/2 (2d), K/2 (1d_bidir) or 0 (2d_circular)
    float scale;      //!< 1 / (fftRows * fftCols): cuFFT's C2R is unnormalised

    FFTCONV_HOST_DEVICE int64_t signals() const noexcept { return batch * channels; }
    FFTCONV_HOST_DEVICE int64_t realPerSignal() const noexcept { return fftRows * fftCols; }
    FFTCONV_HOST_DEVICE int64_t complexPerSignal() const noexcept { return fftRows * specCols; }
    FFTCONV_HOST_DEVICE int64_t outPerSignal() const noexcept { return rows * cols; }
};

//! Geometry for a concrete X shape (N, C, H, W); N may be 0 (empty batch, nothing to do).
Result planGeometry(Attributes const& a, int64_t const xDims[4], Geometry& out);

//! Byte layout of the workspace: [padded real fp32 | complex spectrum | cuFFT work area],
//! each aligned to kWorkspaceAlignment. The cuFFT work area is shared by every plan of the
//! plugin instance (they run one after the other on one stream); cuFFT's own allocation is
//! switched off, so this slice is all the device memory an enqueue touches besides I/O.
struct WorkspaceLayout
{
    size_t realOffset{0};
    size_t realBytes{0};
    size_t complexOffset{0};
    size_t complexBytes{0};
    size_t workOffset{0};
    size_t workBytes{0};
    size_t totalBytes{0};
};
WorkspaceLayout workspaceLayout(Geometry const& g, size_t cufftWorkBytes = 0) noexcept;
//! The check run() makes before launching anything: the workspace handed over (`available`
//! bytes at address `address`) must hold workspaceLayout(g, cufftWorkBytes) and be aligned.
//! kInvalidShape with the sizes in the message when it does not.
Result checkWorkspace(Geometry const& g, size_t cufftWorkBytes, size_t available, std::uintptr_t address);
//! Workspace bytes of the real + complex buffers per batch item (one image: C signals).
size_t workspaceBytesPerBatchItem(Geometry const& g) noexcept;

//! What a cuFFT plan depends on: FFT rank and sizes and the signals per batch item (C).
//! The batch is not part of it: plans exist per power-of-two batch chunk (see below) and
//! survive batch-size changes; H/W changes with the same fft_size keep them too.
struct PlanKey
{
    int32_t rank{0};
    int64_t n0{0}; //!< fftRows (2d) or fftCols (1d)
    int64_t n1{0}; //!< fftCols (2d) or 0
    int64_t channels{0};

    bool operator==(PlanKey const& o) const noexcept
    {
        return rank == o.rank && n0 == o.n0 && n1 == o.n1 && channels == o.channels;
    }
    bool operator!=(PlanKey const& o) const noexcept { return !(*this == o); }
    bool empty() const noexcept { return rank == 0; }
};
PlanKey planKey(Geometry const& g) noexcept;

// ---- batch chunks --------------------------------------------------------------------------
//! A batch of N images is transformed as the binary decomposition of N: one cuFFT call per
//! set bit, largest first, with the plan made for 2^level images (2^level * C signals).
//! Plans exist for every level 0..planLevels(N)-1, so any batch up to 2*2^(levels-1)-1
//! needs no new plan. At most kMaxPlanLevels levels (N*C is limited to int32 anyway).
constexpr int32_t kMaxPlanLevels = 31;
//! Number of plan levels needed for batch N: floor(log2 N) + 1, 0 for N = 0.
int32_t planLevels(int64_t batch) noexcept;

struct BatchChunk
{
    int64_t first{0}; //!< first image of the chunk
    int32_t level{0}; //!< the chunk holds 2^level images
};
//! The chunks of batch N, largest first (popcount(N) entries).
std::vector<BatchChunk> batchChunks(int64_t batch);

//! cuFFT work-area bytes reserved for a batch of N, given the per-level table measured when
//! the workspace was sized (table[k] = work bytes of the level-k R2C and C2R plans): the
//! largest entry of levels 0..planLevels(N)-1. `covered` is false when the table is shorter.
size_t workReserveFor(std::vector<int64_t> const& table, int64_t batch, bool& covered) noexcept;

//! Engine field holding that table (kINT64 list, one entry per level; written by the plugin
//! so that enqueue knows how much workspace TensorRT was asked for).
constexpr char const* kFieldWorkTable = "hyena_fftconv_cufft_work";
//! Checks a table read back from an engine (entries >= 0, at most kMaxPlanLevels).
Result validateWorkTable(std::vector<int64_t> const& table);

// ---- serialisation -----------------------------------------------------------------------
//! Format: "HFCV" | u16 version | u16 reserved(0) | u32 payload bytes | payload | u32 FNV-1a
//! of everything before it. Payload: i32 mode, i32 nk, nk x i32, i32 nf, nf x i32.
//! All integers little-endian.
constexpr uint16_t kSerialFormatVersion = 1;
std::vector<uint8_t> serializeAttributes(Attributes const& a);
Result deserializeAttributes(uint8_t const* data, size_t size, Attributes& out);

// ---- element-index helpers (shared with the CUDA kernels) ----------------------------------
// Templates on the index type I: the kernels use int32_t when every index fits (see
// kernelIndexFits32), int64_t otherwise; the CPU emulation in the tests uses both.

//! Whether every element index of g (and a grid-stride step past the end) fits in int32.
FFTCONV_HD bool kernelIndexFits32(Geometry const& g)
{
    int64_t const most = g.signals() * (g.realPerSignal() > 2 * g.complexPerSignal() ? g.realPerSignal()
                                                                                     : 2 * g.complexPerSignal());
    return most < (int64_t{1} << 30);
}

//! Padded-buffer element -> source element of X, or false for the zero padding.
template <typename I>
FFTCONV_HD bool padSourceIndex(Geometry const& g, I paddedIdx, I& srcIdx)
{
    I const fftCols = static_cast<I>(g.fftCols);
    I const fftRows = static_cast<I>(g.fftRows);
    I const col = paddedIdx % fftCols;
    I const t = paddedIdx / fftCols;
    I const row = t % fftRows;
    I const sig = t / fftRows;
    if (row < static_cast<I>(g.rows) && col < static_cast<I>(g.cols))
    {
        srcIdx = (sig * static_cast<I>(g.rows) + row) * static_cast<I>(g.cols) + col;
        return true;
    }
    return false;
}

//! Spectrum element (over N*C signals) -> element of Kf (broadcast over the batch).
template <typename I>
FFTCONV_HD I filterIndex(Geometry const& g, I specIdx)
{
    return specIdx % static_cast<I>(g.channels * g.complexPerSignal());
}

//! Output element -> element of the inverse-transformed (padded) real buffer.
template <typename I>
FFTCONV_HD I cropSourceIndex(Geometry const& g, I outIdx)
{
    I const cols = static_cast<I>(g.cols);
    I const rows = static_cast<I>(g.rows);
    I const col = outIdx % cols;
    I const t = outIdx / cols;
    I const row = t % rows;
    I const sig = t / rows;
    return (sig * static_cast<I>(g.fftRows) + row + static_cast<I>(g.cropRow)) * static_cast<I>(g.fftCols) + col
        + static_cast<I>(g.cropCol);
}

//! Output (or X) element -> its channel.
template <typename I>
FFTCONV_HD I channelOf(Geometry const& g, I outIdx)
{
    return (outIdx / static_cast<I>(g.outPerSignal())) % static_cast<I>(g.channels);
}

} // namespace fftconv
} // namespace hyena

#endif // HYENA_FFTCONV_CORE_H
