// hyena::FFTConv CPU core: see fftconv_core.h.
#include "fftconv_core.h"

#include <cstring>
#include <limits>
#include <sstream>

namespace hyena
{
namespace fftconv
{
namespace
{

std::string dimsToString(std::vector<int64_t> const& d)
{
    std::ostringstream os;
    os << '(';
    for (size_t i = 0; i < d.size(); ++i)
    {
        os << (i ? ", " : "") << d[i];
    }
    os << (d.size() == 1 ? ",)" : ")");
    return os.str();
}

template <typename T>
std::string listToString(std::vector<T> const& v)
{
    std::ostringstream os;
    os << '[';
    for (size_t i = 0; i < v.size(); ++i)
    {
        os << (i ? ", " : "") << v[i];
    }
    os << ']';
    return os.str();
}

char const* dtypeName(DType t)
{
    switch (t)
    {
    case DType::kFloat32: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kOther: break;
    }
    return "unsupported";
}

size_t alignUp(size_t v, size_t a) noexcept
{
    return (v + a - 1) / a * a;
}

Result intsToInt32(char const* name, AttrValue const& v, std::vector<int32_t>& out)
{
    if (v.kind != AttrValue::Kind::kInts)
    {
        return Result::error(Status::kInvalidAttribute, std::string("field '") + name + "' must be an int list");
    }
    out.clear();
    for (int64_t x : v.ints)
    {
        if (x < std::numeric_limits<int32_t>::min() || x > std::numeric_limits<int32_t>::max())
        {
            return Result::error(
                Status::kInvalidAttribute, std::string("field '") + name + "' value out of int32 range");
        }
        out.push_back(static_cast<int32_t>(x));
    }
    return Result::success();
}

// --- little-endian byte writer / reader ---
void putU32(std::vector<uint8_t>& b, uint32_t v)
{
    for (int i = 0; i < 4; ++i)
    {
        b.push_back(static_cast<uint8_t>((v >> (8 * i)) & 0xFFu));
    }
}

void putU16(std::vector<uint8_t>& b, uint16_t v)
{
    b.push_back(static_cast<uint8_t>(v & 0xFFu));
    b.push_back(static_cast<uint8_t>((v >> 8) & 0xFFu));
}

uint32_t getU32(uint8_t const* p) noexcept
{
    return uint32_t{p[0]} | (uint32_t{p[1]} << 8) | (uint32_t{p[2]} << 16) | (uint32_t{p[3]} << 24);
}

uint16_t getU16(uint8_t const* p) noexcept
{
    return static_cast<uint16_t>(uint16_t{p[0]} | (uint16_t{p[1]} << 8));
}

uint32_t fnv1a(uint8_t const* p, size_t n) noexcept
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; ++i)
    {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

constexpr uint8_t kMagic[4] = {'H', 'F', 'C', 'V'};
constexpr size_t kHeaderBytes = 4 + 2 + 2 + 4;
constexpr size_t kChecksumBytes = 4;
constexpr uint32_t kMaxListLength = 8;

} // namespace

char const* statusName(Status s) noexcept
{
    switch (s)
    {
    case Status::kOk: return "ok";
    case Status::kInvalidAttribute: return "invalid attribute";
    case Status::kInvalidShape: return "invalid shape";
    case Status::kUnsupportedType: return "unsupported type";
    case Status::kCorruptBuffer: return "corrupt buffer";
    case Status::kInternal: return "internal error";
    }
    return "unknown status";
}

char const* modeName(Mode m) noexcept
{
    switch (m)
    {
    case Mode::k2D: return kModeName2D;
    case Mode::k1DBidir: return kModeName1DBidir;
    case Mode::k2DCircular: return kModeName2DCircular;
    }
    return "invalid";
}

int32_t modeRank(Mode m) noexcept
{
    return m == Mode::k1DBidir ? 1 : 2;
}

Result parseMode(std::string const& text, Mode& out)
{
    if (text == kModeName2D)
    {
        out = Mode::k2D;
        return Result::success();
    }
    if (text == kModeName1DBidir)
    {
        out = Mode::k1DBidir;
        return Result::success();
    }
    if (text == kModeName2DCircular)
    {
        out = Mode::k2DCircular;
        return Result::success();
    }
    return Result::error(Status::kInvalidAttribute,
        "unknown mode '" + text + "' (expected '" + kModeName2D + "', '" + kModeName2DCircular + "' or '"
            + kModeName1DBidir + "')");
}

AttrValue AttrValue::makeString(std::string s)
{
    AttrValue v;
    v.kind = Kind::kString;
    v.str = std::move(s);
    return v;
}

AttrValue AttrValue::makeInts(std::vector<int64_t> ints)
{
    AttrValue v;
    v.kind = Kind::kInts;
    v.ints = std::move(ints);
    return v;
}

AttrValue AttrValue::makeBytes(std::vector<uint8_t> b)
{
    AttrValue v;
    v.kind = Kind::kBytes;
    v.bytes = std::move(b);
    return v;
}

Result validateAttributes(Attributes const& a)
{
    if (a.mode != Mode::k2D && a.mode != Mode::k1DBidir && a.mode != Mode::k2DCircular)
    {
        return Result::error(Status::kInvalidAttribute, "mode out of range");
    }
    size_t const rank = static_cast<size_t>(modeRank(a.mode));
    if (a.kernelSize.size() != rank)
    {
        return Result::error(Status::kInvalidAttribute,
            std::string("kernel_size must have ") + std::to_string(rank) + " value(s) in mode '" + modeName(a.mode)
                + "', got " + listToString(a.kernelSize));
    }
    if (a.fftSize.size() != rank)
    {
        return Result::error(Status::kInvalidAttribute,
            std::string("fft_size must have ") + std::to_string(rank) + " value(s) in mode '" + modeName(a.mode)
                + "', got " + listToString(a.fftSize));
    }
    int64_t volume = 1;
    for (size_t i = 0; i < rank; ++i)
    {
        int64_t const k = a.kernelSize[i];
        int64_t const n = a.fftSize[i];
        if (k < 1)
        {
            return Result::error(Status::kInvalidAttribute, "kernel_size must be positive, got " + listToString(a.kernelSize));
        }
        // The linear modes pad to at least 2; a circular transform is the map, which may be 1 wide.
        int64_t const least = a.mode == Mode::k2DCircular ? 1 : 2;
        if (n < least || n > kMaxFftLength)
        {
            return Result::error(Status::kInvalidAttribute,
                "fft_size must be in [" + std::to_string(least) + ", " + std::to_string(kMaxFftLength) + "], got "
                    + listToString(a.fftSize));
        }
        if (n < k)
        {
            return Result::error(Status::kInvalidAttribute,
                "fft_size " + listToString(a.fftSize) + " must hold the whole filter " + listToString(a.kernelSize));
        }
        volume *= n;
    }
    if (a.mode == Mode::k2DCircular && a.kernelSize != a.fftSize)
    {
        // The filter is the whole (circular) map: no padding, so nothing else is meaningful.
        return Result::error(Status::kInvalidAttribute,
            "mode '2d_circular' needs kernel_size == fft_size (the map size), got kernel_size "
                + listToString(a.kernelSize) + " and fft_size " + listToString(a.fftSize));
    }
    if (volume > std::numeric_limits<int32_t>::max())
    {
        return Result::error(Status::kInvalidAttribute, "fft_size volume exceeds int32 (cuFFT plan limit)");
    }
    return Result::success();
}

Result parseAttributes(AttrMap const& fields, Attributes& out)
{
    Attributes plain;
    bool haveMode = false;
    bool haveKernel = false;
    bool haveFft = false;
    bool haveSpatial = false;
    std::vector<int32_t> spatial;

    auto it = fields.find(kFieldMode);
    if (it != fields.end())
    {
        if (it->second.kind != AttrValue::Kind::kString)
        {
            return Result::error(Status::kInvalidAttribute, "field 'mode' must be a string");
        }
        Result r = parseMode(it->second.str, plain.mode);
        if (!r.ok())
        {
            return r;
        }
        haveMode = true;
    }
    it = fields.find(kFieldKernelSize);
    if (it != fields.end())
    {
        Result r = intsToInt32(kFieldKernelSize, it->second, plain.kernelSize);
        if (!r.ok())
        {
            return r;
        }
        haveKernel = true;
    }
    it = fields.find(kFieldFftSize);
    if (it != fields.end())
    {
        Result r = intsToInt32(kFieldFftSize, it->second, plain.fftSize);
        if (!r.ok())
        {
            return r;
        }
        haveFft = true;
    }
    it = fields.find(kFieldSpatialSize);
    if (it != fields.end())
    {
        Result r = intsToInt32(kFieldSpatialSize, it->second, spatial);
        if (!r.ok())
        {
            return r;
        }
        haveSpatial = true;
    }
    // In 2d_circular the transform size is the map size: a node whose spatial_size says
    // otherwise was exported for another map and must not be planned as this one.
    auto spatialAgrees = [&](Attributes const& a) -> Result {
        if (haveSpatial && a.mode == Mode::k2DCircular && spatial != a.fftSize)
        {
            return Result::error(Status::kInvalidAttribute,
                "mode '2d_circular' needs spatial_size == fft_size, got spatial_size " + listToString(spatial)
                    + " and fft_size " + listToString(a.fftSize));
        }
        return Result::success();
    };

    it = fields.find(kFieldState);
    if (it != fields.end())
    {
        if (it->second.kind != AttrValue::Kind::kBytes)
        {
            return Result::error(Status::kInvalidAttribute, std::string("field '") + kFieldState + "' must be bytes");
        }
        Attributes fromBlob;
        Result r = deserializeAttributes(it->second.bytes.data(), it->second.bytes.size(), fromBlob);
        if (!r.ok())
        {
            return r;
        }
        if ((haveMode && plain.mode != fromBlob.mode) || (haveKernel && plain.kernelSize != fromBlob.kernelSize)
            || (haveFft && plain.fftSize != fromBlob.fftSize))
        {
            return Result::error(Status::kInvalidAttribute, "serialized state disagrees with the plain fields");
        }
        r = spatialAgrees(fromBlob);
        if (!r.ok())
        {
            return r;
        }
        out = fromBlob;
        return Result::success();
    }

    if (!haveMode || !haveKernel || !haveFft)
    {
        std::string missing;
        if (!haveMode)
        {
            missing += " mode";
        }
        if (!haveKernel)
        {
            missing += " kernel_size";
        }
        if (!haveFft)
        {
            missing += " fft_size";
        }
        return Result::error(Status::kInvalidAttribute, "missing required field(s):" + missing);
    }
    Result r = validateAttributes(plain);
    if (r.ok())
    {
        r = spatialAgrees(plain);
    }
    if (!r.ok())
    {
        return r;
    }
    out = plain;
    return Result::success();
}

std::vector<int64_t> expectedKfShape(Attributes const& a, int64_t channels)
{
    if (a.mode == Mode::k2D || a.mode == Mode::k2DCircular)
    {
        return {channels, a.fftSize.at(0), a.fftSize.at(1) / 2 + 1, 2};
    }
    return {channels, a.fftSize.at(0) / 2 + 1, 2};
}

Result checkInputs(Attributes const& a, TensorInfo const& x, TensorInfo const& kf, TensorInfo const& d)
{
    Result r = validateAttributes(a);
    if (!r.ok())
    {
        return r;
    }
    if (x.type != DType::kFloat32 && x.type != DType::kFloat16)
    {
        return Result::error(Status::kUnsupportedType,
            std::string("X must be float32 or float16, got ") + dtypeName(x.type));
    }
    if (kf.type != DType::kFloat32)
    {
        return Result::error(Status::kUnsupportedType, std::string("Kf must be float32, got ") + dtypeName(kf.type));
    }
    if (d.type != DType::kFloat32)
    {
        return Result::error(Status::kUnsupportedType, std::string("D must be float32, got ") + dtypeName(d.type));
    }
    if (x.dims.size() != 4)
    {
        return Result::error(Status::kInvalidShape, "X must have rank 4 (N, C, H, W), got " + dimsToString(x.dims));
    }
    for (int64_t v : x.dims)
    {
        if (v < -1)
        {
            return Result::error(Status::kInvalidShape, "X has an invalid dimension: " + dimsToString(x.dims));
        }
    }
    int64_t const channels = x.dims[1];
    if (channels == 0)
    {
        return Result::error(Status::kInvalidShape, "X has zero channels");
    }

    std::vector<int64_t> const want = expectedKfShape(a, channels);
    bool kfOk = kf.dims.size() == want.size();
    for (size_t i = 0; kfOk && i < want.size(); ++i)
    {
        kfOk = kf.dims[i] == -1 || want[i] == -1 || kf.dims[i] == want[i];
    }
    if (!kfOk)
    {
        return Result::error(Status::kInvalidShape,
            "Kf shape " + dimsToString(kf.dims) + " does not match the expected " + dimsToString(want) + " for mode '"
                + modeName(a.mode) + "', fft_size " + listToString(a.fftSize) + " and C=" + std::to_string(channels));
    }
    bool dOk = d.dims.size() == 1 && (d.dims[0] == -1 || channels == -1 || d.dims[0] == channels);
    if (!dOk)
    {
        return Result::error(Status::kInvalidShape,
            "D shape " + dimsToString(d.dims) + " must be (C,) with C=" + std::to_string(channels));
    }

    if (a.mode == Mode::k2DCircular)
    {
        // Circular convolution at the map size: the map must be exactly the transform.
        for (int i = 0; i < 2; ++i)
        {
            int64_t const n = x.dims[2 + i];
            if (n != -1 && n != a.fftSize[i])
            {
                return Result::error(Status::kInvalidShape,
                    std::string("mode '2d_circular': ") + (i == 0 ? "H" : "W") + "=" + std::to_string(n)
                        + " must equal fft_size[" + std::to_string(i) + "]=" + std::to_string(a.fftSize[i])
                        + " (transform size = map size)");
            }
        }
    }
    // Alias-free rule per FFT dimension: fft >= n + k/2.
    else if (a.mode == Mode::k2D)
    {
        for (int i = 0; i < 2; ++i)
        {
            int64_t const n = x.dims[2 + i];
            int64_t const k = a.kernelSize[i];
            int64_t const f = a.fftSize[i];
            if (n != -1 && f < n + k / 2)
            {
                return Result::error(Status::kInvalidShape,
                    std::string(i == 0 ? "fft_size[0] (Nh)" : "fft_size[1] (Nw)") + "=" + std::to_string(f)
                        + " is too small for " + (i == 0 ? "H" : "W") + "=" + std::to_string(n) + " and kernel "
                        + std::to_string(k) + ": need >= " + std::to_string(n + k / 2) + " (alias-free)");
            }
        }
    }
    else if (x.dims[2] != -1 && x.dims[3] != -1)
    {
        int64_t const n = x.dims[2] * x.dims[3];
        int64_t const k = a.kernelSize[0];
        int64_t const f = a.fftSize[0];
        if (f < n + k / 2)
        {
            return Result::error(Status::kInvalidShape,
                "fft_size[0]=" + std::to_string(f) + " is too small for L=H*W=" + std::to_string(n) + " and kernel "
                    + std::to_string(k) + ": need >= " + std::to_string(n + k / 2) + " (alias-free)");
        }
    }
    return Result::success();
}

Result outputShape(std::vector<int64_t> const& xDims, std::vector<int64_t>& out)
{
    if (xDims.size() != 4)
    {
        return Result::error(Status::kInvalidShape, "X must have rank 4 (N, C, H, W), got " + dimsToString(xDims));
    }
    out = xDims;
    return Result::success();
}

Result planGeometry(Attributes const& a, int64_t const xDims[4], Geometry& out)
{
    for (int i = 0; i < 4; ++i)
    {
        if (xDims[i] < (i == 0 ? 0 : 1))
        {
            return Result::error(Status::kInvalidShape,
                "X needs concrete dims N>=0, C,H,W>=1, got " + dimsToString({xDims[0], xDims[1], xDims[2], xDims[3]}));
        }
    }
    Result r = validateAttributes(a);
    if (!r.ok())
    {
        return r;
    }
    TensorInfo const x{{xDims[0], xDims[1], xDims[2], xDims[3]}, DType::kFloat32};
    TensorInfo const kf{expectedKfShape(a, xDims[1]), DType::kFloat32};
    TensorInfo const d{{xDims[1]}, DType::kFloat32};
    r = checkInputs(a, x, kf, d);
    if (!r.ok())
    {
        return r;
    }
    int64_t const signals = xDims[0] * xDims[1];
    if (signals > std::numeric_limits<int32_t>::max())
    {
        return Result::error(Status::kInvalidShape, "N*C exceeds int32 (cuFFT batch limit)");
    }
    Geometry g{};
    g.rank = modeRank(a.mode);
    g.batch = xDims[0];
    g.channels = xDims[1];
    if (a.mode == Mode::k2D || a.mode == Mode::k2DCircular)
    {
        // 2d_circular: fft == (H, W), so the pad kernel is a plain copy (+ cast) and the crop
        // window starts at 0; the kernels are the same as in mode 2d.
        bool const circular = a.mode == Mode::k2DCircular;
        g.rows = xDims[2];
        g.cols = xDims[3];
        g.fftRows = a.fftSize[0];
        g.fftCols = a.fftSize[1];
        g.cropRow = circular ? 0 : a.kernelSize[0] / 2;
        g.cropCol = circular ? 0 : a.kernelSize[1] / 2;
    }
    else
    {
        g.rows = 1;
        g.cols = xDims[2] * xDims[3];
        g.fftRows = 1;
        g.fftCols = a.fftSize[0];
        g.cropRow = 0;
        g.cropCol = a.kernelSize[0] / 2;
    }
    g.specCols = g.fftCols / 2 + 1;
    g.scale = static_cast<float>(1.0 / (static_cast<double>(g.fftRows) * static_cast<double>(g.fftCols)));
    out = g;
    return Result::success();
}

WorkspaceLayout workspaceLayout(Geometry const& g, size_t cufftWorkBytes) noexcept
{
    WorkspaceLayout w;
    size_t const signals = static_cast<size_t>(g.signals());
    w.realOffset = 0;
    w.realBytes = alignUp(signals * static_cast<size_t>(g.realPerSignal()) * sizeof(float), kWorkspaceAlignment);
    w.complexOffset = w.realOffset + w.realBytes;
    w.complexBytes
        = alignUp(signals * static_cast<size_t>(g.complexPerSignal()) * 2 * sizeof(float), kWorkspaceAlignment);
    w.workOffset = w.complexOffset + w.complexBytes;
    w.workBytes = signals == 0 ? 0 : alignUp(cufftWorkBytes, kWorkspaceAlignment);
    w.totalBytes = w.workOffset + w.workBytes;
    return w;
}

Result checkWorkspace(Geometry const& g, size_t cufftWorkBytes, size_t available, std::uintptr_t address)
{
    size_t const need = workspaceLayout(g, cufftWorkBytes).totalBytes;
    if (available < need)
    {
        return Result::error(Status::kInvalidShape,
            "workspace of " + std::to_string(available) + " bytes is smaller than the " + std::to_string(need)
                + " this batch needs (buffers + " + std::to_string(cufftWorkBytes) + " bytes of cuFFT work area)");
    }
    if (need > 0 && address % kWorkspaceAlignment != 0)
    {
        return Result::error(Status::kInvalidShape,
            "workspace is not " + std::to_string(kWorkspaceAlignment) + "-byte aligned");
    }
    return Result::success();
}

size_t workspaceBytesPerBatchItem(Geometry const& g) noexcept
{
    Geometry one = g;
    one.batch = 1;
    return workspaceLayout(one).totalBytes;
}

PlanKey planKey(Geometry const& g) noexcept
{
    PlanKey k;
    k.rank = g.rank;
    if (g.rank == 2)
    {
        k.n0 = g.fftRows;
        k.n1 = g.fftCols;
    }
    else
    {
        k.n0 = g.fftCols;
        k.n1 = 0;
    }
    k.channels = g.channels;
    return k;
}

int32_t planLevels(int64_t batch) noexcept
{
    int32_t levels = 0;
    while (batch > 0 && levels < 63)
    {
        ++levels;
        batch >>= 1;
    }
    return levels;
}

std::vector<BatchChunk> batchChunks(int64_t batch)
{
    std::vector<BatchChunk> chunks;
    int64_t first = 0;
    for (int32_t level = planLevels(batch) - 1; level >= 0; --level)
    {
        if ((batch >> level) & 1)
        {
            chunks.push_back(BatchChunk{first, level});
            first += int64_t{1} << level;
        }
    }
    return chunks;
}

size_t workReserveFor(std::vector<int64_t> const& table, int64_t batch, bool& covered) noexcept
{
    int32_t const levels = planLevels(batch);
    covered = static_cast<size_t>(levels) <= table.size();
    size_t reserve = 0;
    for (int32_t k = 0; k < levels && static_cast<size_t>(k) < table.size(); ++k)
    {
        if (table[static_cast<size_t>(k)] > 0 && static_cast<size_t>(table[static_cast<size_t>(k)]) > reserve)
        {
            reserve = static_cast<size_t>(table[static_cast<size_t>(k)]);
        }
    }
    return reserve;
}

Result validateWorkTable(std::vector<int64_t> const& table)
{
    if (table.size() > static_cast<size_t>(kMaxPlanLevels))
    {
        return Result::error(Status::kCorruptBuffer,
            std::string("field '") + kFieldWorkTable + "' has " + std::to_string(table.size()) + " entries (max "
                + std::to_string(kMaxPlanLevels) + ")");
    }
    for (int64_t v : table)
    {
        if (v < 0 || v > (int64_t{1} << 50))
        {
            return Result::error(Status::kCorruptBuffer,
                std::string("field '") + kFieldWorkTable + "' has an invalid entry " + std::to_string(v));
        }
    }
    return Result::success();
}

std::vector<uint8_t> serializeAttributes(Attributes const& a)
{
    std::vector<uint8_t> payload;
    putU32(payload, static_cast<uint32_t>(a.mode));
    putU32(payload, static_cast<uint32_t>(a.kernelSize.size()));
    for (int32_t v : a.kernelSize)
    {
        putU32(payload, static_cast<uint32_t>(v));
    }
    putU32(payload, static_cast<uint32_t>(a.fftSize.size()));
    for (int32_t v : a.fftSize)
    {
        putU32(payload, static_cast<uint32_t>(v));
    }
    std::vector<uint8_t> out(kMagic, kMagic + 4);
    putU16(out, kSerialFormatVersion);
    putU16(out, 0);
    putU32(out, static_cast<uint32_t>(payload.size()));
    out.insert(out.end(), payload.begin(), payload.end());
    putU32(out, fnv1a(out.data(), out.size()));
    return out;
}

Result deserializeAttributes(uint8_t const* data, size_t size, Attributes& out)
{
    if (data == nullptr || size < kHeaderBytes + kChecksumBytes)
    {
        return Result::error(Status::kCorruptBuffer,
            "serialized FFTConv state too short (" + std::to_string(size) + " bytes)");
    }
    if (std::memcmp(data, kMagic, 4) != 0)
    {
        return Result::error(Status::kCorruptBuffer, "serialized FFTConv state has a bad magic");
    }
    uint16_t const version = getU16(data + 4);
    if (version != kSerialFormatVersion)
    {
        return Result::error(Status::kCorruptBuffer,
            "serialized FFTConv state has format version " + std::to_string(version) + ", this plugin reads "
                + std::to_string(kSerialFormatVersion));
    }
    if (getU16(data + 6) != 0)
    {
        return Result::error(Status::kCorruptBuffer, "serialized FFTConv state has non-zero reserved bits");
    }
    uint32_t const payloadBytes = getU32(data + 8);
    if (size != kHeaderBytes + static_cast<size_t>(payloadBytes) + kChecksumBytes)
    {
        return Result::error(Status::kCorruptBuffer,
            "serialized FFTConv state size " + std::to_string(size) + " does not match its header ("
                + std::to_string(kHeaderBytes + static_cast<size_t>(payloadBytes) + kChecksumBytes) + ")");
    }
    size_t const body = kHeaderBytes + payloadBytes;
    if (getU32(data + body) != fnv1a(data, body))
    {
        return Result::error(Status::kCorruptBuffer, "serialized FFTConv state checksum mismatch");
    }

    uint8_t const* p = data + kHeaderBytes;
    uint8_t const* const end = data + body;
    auto readI32 = [&](int32_t& v) -> bool {
        if (end - p < 4)
        {
            return false;
        }
        v = static_cast<int32_t>(getU32(p));
        p += 4;
        return true;
    };
    auto readList = [&](std::vector<int32_t>& v) -> bool {
        int32_t n = 0;
        if (!readI32(n) || n < 0 || static_cast<uint32_t>(n) > kMaxListLength)
        {
            return false;
        }
        v.assign(static_cast<size_t>(n), 0);
        for (auto& e : v)
        {
            if (!readI32(e))
            {
                return false;
            }
        }
        return true;
    };
    Attributes a;
    int32_t mode = -1;
    if (!readI32(mode)
        || (mode != static_cast<int32_t>(Mode::k2D) && mode != static_cast<int32_t>(Mode::k1DBidir)
            && mode != static_cast<int32_t>(Mode::k2DCircular)))
    {
        return Result::error(Status::kCorruptBuffer, "serialized FFTConv state has an invalid mode");
    }
    a.mode = static_cast<Mode>(mode);
    if (!readList(a.kernelSize) || !readList(a.fftSize) || p != end)
    {
        return Result::error(Status::kCorruptBuffer, "serialized FFTConv state has a malformed payload");
    }
    Result r = validateAttributes(a);
    if (!r.ok())
    {
        return Result::error(Status::kCorruptBuffer, "serialized FFTConv state is invalid: " + r.message);
    }
    out = a;
    return Result::success();
}

} // namespace fftconv
} // namespace hyena
