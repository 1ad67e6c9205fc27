// fftconv_gpu_check: the plugins' enqueue paths on a GPU, without TensorRT.
//
// FFTConv (modes 2d, 2d_circular, 1d_bidir): runs what FFTConvPlugin does -- workspace sized like getWorkspaceSize (buffers + the cuFFT
// work area per batch level from queryWorkBytes), plans made like onShapeChange (ensurePlans;
// their real work area must fit the reserve), then run() with the granted workspace on a
// stream like enqueue -- and
// compares the result with a direct convolution on the CPU (fftconv_reference.h):
//   * every hpx_former_s18 stage shape (mode 2d), hb_former_s18 stage shape (1d_bidir) and
//     gf_former_s18 stage shape (2d_circular, against a direct circular convolution) at
//     224 px, plus odd sizes, fp32 and fp16 I/O (tolerance 1e-4 / 1e-2 relative to the
//     largest reference value);
//   * batch sizes 1 -> 8 -> 3 -> 8 on one set of plans, asserting through
//     cufftPlansCreated() that no cuFFT plan is made after the first call of a batch size;
//   * the workspace check: run() refuses a workspace one byte short;
//   * one run captured in a CUDA graph (no plan made during capture), replayed, compared.
// The GPU runs the full channel count; the CPU reference covers every channel where that
// is cheap and a subset (printed) on the two largest stages of each model.
// RFFT2 / IRFFT2: what SpectralPlugin does (R2C-only / C2R-only plans per batch level,
// workspace from queryWorkBytes, runSpectral) at the aff_former_s18 stage shapes and odd
// sizes (odd W and H, 1-row and 1-column maps), fp32/fp16, batch 1 -> 8 -> 3 -> 8 with the
// plan count, against the DFT sums of fftconv_reference.h; IRFFT2 on random (non-Hermitian)
// planar input, so the DC/Nyquist handling is checked too; plus the 1-byte-short workspace.
//
// Output: one line per case, then exactly "N passed, M failed"; exit 0 only if M == 0
// (exit 2 when there is no usable CUDA device).
//
// --bench-json: instead of the checks, time the plugins' enqueue paths (cudaEvent, median of
// --reps runs after warm-up) at batch 1 and 8, fp32 and fp16, printing one JSON object per line:
//   FFTConv run() at every S18 stage shape (hpx 2d, hb 1d_bidir, gf 2d_circular):
//     {"op":"FFTConv","mode","channels","spatial":[H,W],"kernel":[...],"batch","dtype","median_ms"}
//   RFFT2 / IRFFT2 runSpectral() at the aff_former_s18 stage maps (channels = real channels C):
//     {"op":"RFFT2"|"IRFFT2","channels","spatial":[H,W],"batch","dtype","median_ms"}
#include "fftconv_core.h"
#include "fftconv_kernels.cuh"
#include "fftconv_reference.h"
#include "spectral_core.h"
#include "spectral_kernels.cuh"

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

using namespace hyena::fftconv;

namespace
{

struct Shape
{
    Mode mode;
    int64_t c;
    int64_t h;
    int64_t w;
    int32_t kh; //!< 2d: Kh; 1d: 1
    int32_t kw; //!< 2d: Kw; 1d: K
    bool s18;   //!< an hpx/hb/gf_former_s18 stage shape at 224 px (benchmarked by --bench-json)
};

std::vector<Shape> shapes()
{
    return {
        // hpx_former_s18 @224: C x H x W, K = 2H - 1
        {Mode::k2D, 64, 56, 56, 111, 111, true},
        {Mode::k2D, 128, 28, 28, 55, 55, true},
        {Mode::k2D, 320, 14, 14, 27, 27, true},
        {Mode::k2D, 512, 7, 7, 13, 13, true},
        // hb_former_s18 @224: L = H*W, K = 2L - 1
        {Mode::k1DBidir, 64, 56, 56, 1, 6271, true},
        {Mode::k1DBidir, 128, 28, 28, 1, 1567, true},
        {Mode::k1DBidir, 320, 14, 14, 1, 391, true},
        {Mode::k1DBidir, 512, 7, 7, 1, 97, true},
        // odd sizes: non-square map, odd FFT sizes, filter smaller than the map
        {Mode::k2D, 3, 5, 7, 9, 9, false},
        {Mode::k2D, 5, 9, 6, 3, 5, false},
        {Mode::k1DBidir, 3, 3, 5, 1, 29, false},
        {Mode::k1DBidir, 7, 5, 3, 1, 9, false},
        // gf_former_s18 @224 (2d_circular: the filter is the map, K = (H, W)), then odd sizes
        {Mode::k2DCircular, 64, 56, 56, 56, 56, true},
        {Mode::k2DCircular, 128, 28, 28, 28, 28, true},
        {Mode::k2DCircular, 320, 14, 14, 14, 14, true},
        {Mode::k2DCircular, 512, 7, 7, 7, 7, true},
        {Mode::k2DCircular, 3, 7, 5, 7, 5, false},
        {Mode::k2DCircular, 5, 9, 6, 9, 6, false},
        {Mode::k2DCircular, 2, 1, 6, 1, 6, false},
    };
}

Attributes attrsFor(Shape const& s)
{
    Attributes a;
    a.mode = s.mode;
    if (s.mode == Mode::k2DCircular)
    {
        a.kernelSize = {static_cast<int32_t>(s.h), static_cast<int32_t>(s.w)};
        a.fftSize = a.kernelSize;
    }
    else if (s.mode == Mode::k2D)
    {
        a.kernelSize = {s.kh, s.kw};
        a.fftSize = {static_cast<int32_t>(std::max<int64_t>(2 * s.h, s.kh)),
            static_cast<int32_t>(std::max<int64_t>(2 * s.w, s.kw))};
    }
    else
    {
        a.kernelSize = {s.kw};
        a.fftSize = {static_cast<int32_t>(std::max<int64_t>(2 * s.h * s.w, s.kw))};
    }
    return a;
}

std::string describe(Shape const& s)
{
    char buf[160];
    if (s.mode == Mode::k2DCircular)
    {
        std::snprintf(buf, sizeof(buf), "2d_circular C=%lld %lldx%lld", static_cast<long long>(s.c),
            static_cast<long long>(s.h), static_cast<long long>(s.w));
    }
    else if (s.mode == Mode::k2D)
    {
        std::snprintf(buf, sizeof(buf), "2d C=%lld %lldx%lld K=%dx%d", static_cast<long long>(s.c),
            static_cast<long long>(s.h), static_cast<long long>(s.w), s.kh, s.kw);
    }
    else
    {
        std::snprintf(buf, sizeof(buf), "1d_bidir C=%lld L=%lld (%lldx%lld) K=%d", static_cast<long long>(s.c),
            static_cast<long long>(s.h * s.w), static_cast<long long>(s.h), static_cast<long long>(s.w), s.kw);
    }
    return buf;
}

int gPassed = 0;
int gFailed = 0;

void report(bool ok, std::string const& line)
{
    (ok ? gPassed : gFailed)++;
    std::printf("%s %s\n", ok ? "PASS" : "FAIL", line.c_str());
    std::fflush(stdout);
}

std::string cudaMsg(cudaError_t e)
{
    return std::string(cudaGetErrorName(e)) + " (" + cudaGetErrorString(e) + ")";
}

std::string kernelMsg(KernelResult const& r)
{
    return std::string(kernelStatusName(r.status)) + " " + std::to_string(r.detail) + " in " + r.where;
}

//! Device buffer that frees itself.
struct DevBuf
{
    void* p{nullptr};
    size_t bytes{0};
    cudaError_t alloc(size_t n)
    {
        bytes = n;
        return cudaMalloc(&p, n == 0 ? 1 : n);
    }
    ~DevBuf()
    {
        if (p != nullptr)
        {
            cudaFree(p);
        }
    }
};

//! Everything a shape needs on the host and the device, for up to kMaxBatch images.
struct Problem
{
    static constexpr int64_t kMaxBatch = 8;
    Shape s{};
    Attributes attrs;
    Geometry gMax{};
    std::vector<float> x;       //!< (8, C, H, W), values exactly representable in fp16
    std::vector<__half> xh;
    std::vector<float> filters; //!< (nFilters, kh, kw)
    int64_t nFilters{1};
    std::vector<float> kf;      //!< (C, Nh, Nw/2+1, 2): channel c uses filter c % nFilters
    std::vector<float> d;       //!< (C,)
    DevBuf dx, dxh, dy, dyh, dkf, dd, dws;
    std::vector<int64_t> workTable; //!< cuFFT work bytes per batch level (as getWorkspaceSize)
};

//! Fills a Problem; returns an error text or "".
std::string setup(Problem& p, Shape const& s, bool withKf, std::mt19937& rng)
{
    p.s = s;
    p.attrs = attrsFor(s);
    int64_t const xd[4] = {Problem::kMaxBatch, s.c, s.h, s.w};
    Result const r = planGeometry(p.attrs, xd, p.gMax);
    if (!r.ok())
    {
        return "planGeometry: " + r.message;
    }
    Geometry const& g = p.gMax;
    std::normal_distribution<float> nd;
    size_t const nx = static_cast<size_t>(Problem::kMaxBatch * s.c * s.h * s.w);
    p.x.resize(nx);
    p.xh.resize(nx);
    for (size_t i = 0; i < nx; ++i)
    {
        p.xh[i] = __float2half_rn(nd(rng));
        p.x[i] = __half2float(p.xh[i]);
    }
    p.d.resize(static_cast<size_t>(s.c));
    for (auto& v : p.d)
    {
        v = nd(rng);
    }
    // Distinct filters where the CPU spectrum is cheap, else repeated every nFilters channels.
    double const perFilter = s.mode != Mode::k1DBidir
        ? static_cast<double>(s.kh) * (s.kw + g.fftRows) * static_cast<double>(g.specCols)
        : static_cast<double>(s.kw) * static_cast<double>(g.specCols);
    p.nFilters = std::max<int64_t>(1, std::min<int64_t>(s.c, static_cast<int64_t>(4e8 / perFilter)));
    int64_t const taps = static_cast<int64_t>(s.kh) * s.kw;
    p.filters.resize(static_cast<size_t>(p.nFilters * taps));
    float const scale = 1.0f / std::sqrt(static_cast<float>(std::min<int64_t>(taps, s.h * s.w)));
    for (auto& v : p.filters)
    {
        v = nd(rng) * scale;
    }
    size_t const perChannel = static_cast<size_t>(g.complexPerSignal() * 2);
    p.kf.resize(static_cast<size_t>(s.c) * perChannel);
    if (withKf)
    {
        std::vector<float> const distinct
            = fftconv_ref::makeKf(p.filters, p.nFilters, s.kh, s.kw, g.fftRows, g.fftCols);
        for (int64_t c = 0; c < s.c; ++c)
        {
            std::copy_n(&distinct[static_cast<size_t>(c % p.nFilters) * perChannel], perChannel,
                &p.kf[static_cast<size_t>(c) * perChannel]);
        }
    }

    // Workspace like getWorkspaceSize for a profile with max batch 8: buffers + the largest
    // cuFFT work area of batch levels 1, 2, 4, 8 (queryWorkBytes, no plan made).
    p.workTable.assign(static_cast<size_t>(planLevels(Problem::kMaxBatch)), 0);
    KernelResult const k = queryWorkBytes(g, static_cast<int32_t>(p.workTable.size()), p.workTable.data());
    if (!k.ok())
    {
        return "queryWorkBytes: " + kernelMsg(k);
    }
    bool covered = false;
    size_t const wsBytes = workspaceLayout(g, workReserveFor(p.workTable, Problem::kMaxBatch, covered)).totalBytes;

    size_t const yBytes32 = nx * sizeof(float);
    size_t const yBytes16 = nx * sizeof(__half);
    cudaError_t e = p.dx.alloc(yBytes32);
    if (e == cudaSuccess) e = p.dxh.alloc(yBytes16);
    if (e == cudaSuccess) e = p.dy.alloc(yBytes32);
    if (e == cudaSuccess) e = p.dyh.alloc(yBytes16);
    if (e == cudaSuccess) e = p.dkf.alloc(p.kf.size() * sizeof(float));
    if (e == cudaSuccess) e = p.dd.alloc(p.d.size() * sizeof(float));
    if (e == cudaSuccess) e = p.dws.alloc(wsBytes);
    if (e == cudaSuccess) e = cudaMemcpy(p.dx.p, p.x.data(), yBytes32, cudaMemcpyHostToDevice);
    if (e == cudaSuccess) e = cudaMemcpy(p.dxh.p, p.xh.data(), yBytes16, cudaMemcpyHostToDevice);
    if (e == cudaSuccess) e = cudaMemcpy(p.dkf.p, p.kf.data(), p.kf.size() * sizeof(float), cudaMemcpyHostToDevice);
    if (e == cudaSuccess) e = cudaMemcpy(p.dd.p, p.d.data(), p.d.size() * sizeof(float), cudaMemcpyHostToDevice);
    if (e != cudaSuccess)
    {
        return "device set-up: " + cudaMsg(e);
    }
    return "";
}

//! The reference channels: all when the direct convolution is cheap, else a spread subset.
std::vector<int64_t> referenceChannels(Shape const& s)
{
    double const perChannel = static_cast<double>(Problem::kMaxBatch) * static_cast<double>(s.h * s.w)
        * static_cast<double>(std::min<int64_t>(static_cast<int64_t>(s.kh) * s.kw, s.h * s.w));
    std::vector<int64_t> out;
    if (perChannel * static_cast<double>(s.c) <= 2.5e8)
    {
        for (int64_t c = 0; c < s.c; ++c)
        {
            out.push_back(c);
        }
        return out;
    }
    std::set<int64_t> pick{0, 1, 2, 3, s.c / 2 + 1, s.c - 1};
    for (int64_t c : pick)
    {
        if (c >= 0 && c < s.c)
        {
            out.push_back(c);
        }
    }
    return out;
}

std::string channelsText(std::vector<int64_t> const& ch, int64_t total)
{
    if (static_cast<int64_t>(ch.size()) == total)
    {
        return "all " + std::to_string(total) + " channels";
    }
    std::string t = "channels";
    for (size_t i = 0; i < ch.size(); ++i)
    {
        t += (i ? "," : " ") + std::to_string(ch[i]);
    }
    return t + " of " + std::to_string(total) + " (reduced: CPU reference cost)";
}

//! Direct convolution for every image of the max batch on the reference channels:
//! ref[(b * C + c) * HW + i] (only reference channels filled).
std::vector<double> reference(Problem const& p, std::vector<int64_t> const& channels)
{
    Shape const& s = p.s;
    int64_t const hw = s.h * s.w;
    std::vector<double> ref(static_cast<size_t>(Problem::kMaxBatch * s.c * hw), 0.0);
    int64_t const taps = static_cast<int64_t>(s.kh) * s.kw;
    for (int64_t b = 0; b < Problem::kMaxBatch; ++b)
    {
        for (int64_t c : channels)
        {
            size_t const off = static_cast<size_t>((b * s.c + c) * hw);
            float const* k = &p.filters[static_cast<size_t>((c % p.nFilters) * taps)];
            if (s.mode == Mode::k2DCircular)
            {
                fftconv_ref::directCircularConv2d(&p.x[off], k, p.d[static_cast<size_t>(c)], s.h, s.w, &ref[off]);
            }
            else if (s.mode == Mode::k2D)
            {
                fftconv_ref::directConv2d(&p.x[off], k, p.d[static_cast<size_t>(c)], s.h, s.w, s.kh, s.kw, &ref[off]);
            }
            else
            {
                fftconv_ref::directConv1d(&p.x[off], k, p.d[static_cast<size_t>(c)], hw, s.kw, &ref[off]);
            }
        }
    }
    return ref;
}

//! Copies Y back and returns the error relative to the largest reference value (NaN if any
//! output on a reference channel is not finite).
double compare(Problem const& p, bool fp16, int64_t batch, std::vector<int64_t> const& channels,
    std::vector<double> const& ref, std::string& err)
{
    Shape const& s = p.s;
    int64_t const hw = s.h * s.w;
    size_t const n = static_cast<size_t>(batch * s.c * hw);
    std::vector<double> got(n);
    cudaError_t e;
    if (fp16)
    {
        std::vector<__half> y(n);
        e = cudaMemcpy(y.data(), p.dyh.p, n * sizeof(__half), cudaMemcpyDeviceToHost);
        for (size_t i = 0; i < n; ++i)
        {
            got[i] = __half2float(y[i]);
        }
    }
    else
    {
        std::vector<float> y(n);
        e = cudaMemcpy(y.data(), p.dy.p, n * sizeof(float), cudaMemcpyDeviceToHost);
        for (size_t i = 0; i < n; ++i)
        {
            got[i] = y[i];
        }
    }
    if (e != cudaSuccess)
    {
        err = "copy back: " + cudaMsg(e);
        return NAN;
    }
    double num = 0;
    double den = 0;
    for (int64_t b = 0; b < batch; ++b)
    {
        for (int64_t c : channels)
        {
            size_t const off = static_cast<size_t>((b * s.c + c) * hw);
            for (int64_t i = 0; i < hw; ++i)
            {
                double const g = got[off + static_cast<size_t>(i)];
                double const w = ref[off + static_cast<size_t>(i)];
                if (!std::isfinite(g))
                {
                    return NAN;
                }
                num = std::max(num, std::fabs(g - w));
                den = std::max(den, std::fabs(w));
            }
        }
    }
    return num / std::max(den, 1e-30);
}

//! LaunchArgs for batch `batch` with the workspace the plugin would be granted for it.
LaunchArgs launchArgs(Problem const& p, Geometry const& g, bool fp16)
{
    LaunchArgs a;
    a.geom = g;
    a.io = fp16 ? IoType::kFloat16 : IoType::kFloat32;
    a.x = fp16 ? p.dxh.p : p.dx.p;
    a.y = fp16 ? p.dyh.p : p.dy.p;
    a.kf = static_cast<float const*>(p.dkf.p);
    a.d = static_cast<float const*>(p.dd.p);
    a.workspace = p.dws.p;
    bool covered = false;
    a.workspaceBytes = workspaceLayout(g, workReserveFor(p.workTable, g.batch, covered)).totalBytes;
    return a;
}

Geometry geometryFor(Problem const& p, int64_t batch)
{
    int64_t const xd[4] = {batch, p.s.c, p.s.h, p.s.w};
    Geometry g{};
    planGeometry(p.attrs, xd, g); // validated for the max batch already
    return g;
}

cudaError_t poisonOutputs(Problem const& p, cudaStream_t stream)
{
    cudaError_t e = cudaMemsetAsync(p.dy.p, 0xFF, p.dy.bytes, stream); // NaN patterns
    if (e == cudaSuccess)
    {
        e = cudaMemsetAsync(p.dyh.p, 0xFF, p.dyh.bytes, stream);
    }
    return e;
}

void checkShape(Shape const& s, cudaStream_t stream, std::mt19937& rng, bool withGraph)
{
    std::string const name = describe(s);
    Problem p;
    std::string const err = setup(p, s, true, rng);
    if (!err.empty())
    {
        report(false, name + ": " + err);
        return;
    }
    std::vector<int64_t> const channels = referenceChannels(s);
    std::vector<double> const ref = reference(p, channels);
    std::string const chText = channelsText(channels, s.c);

    FftPlans plans; // one plugin instance: one set of plans for all calls below
    std::set<int64_t> seen;
    int64_t const before = cufftPlansCreated();
    for (bool fp16 : {false, true})
    {
        double const tol = fp16 ? 1e-2 : 1e-4;
        for (int64_t batch : {1, 8, 3, 8})
        {
            Geometry const g = geometryFor(p, batch);
            char head[256];
            std::snprintf(head, sizeof(head), "%s %s batch=%lld", name.c_str(), fp16 ? "fp16" : "fp32",
                static_cast<long long>(batch));
            // onShapeChange: plans for new batch levels only.
            int64_t const c0 = cufftPlansCreated();
            KernelResult k = ensurePlans(g, plans);
            int64_t const made = cufftPlansCreated() - c0;
            bool const firstOfSize = seen.insert(batch).second;
            if (!k.ok())
            {
                report(false, std::string(head) + ": ensurePlans: " + kernelMsg(k));
                continue;
            }
            bool covered = false;
            size_t const needWork = plansWorkBytes(plans, batch, covered);
            size_t const reserved = workReserveFor(p.workTable, batch, covered);
            // enqueue: run() with the granted workspace on the stream.
            cudaError_t e = poisonOutputs(p, stream);
            LaunchArgs const a = launchArgs(p, g, fp16);
            k = run(a, plans, stream);
            if (e == cudaSuccess)
            {
                e = cudaStreamSynchronize(stream);
            }
            std::string cmpErr;
            double const rel = k.ok() && e == cudaSuccess ? compare(p, fp16, batch, channels, ref, cmpErr) : NAN;
            bool const replanned = !firstOfSize && made != 0;
            bool const ok = k.ok() && e == cudaSuccess && rel <= tol && !replanned && needWork <= reserved;
            char line[512];
            std::snprintf(line, sizeof(line),
                "%s: rel err %.3g (tol %g), cuFFT plans made %lld%s, work area %zu of %zu reserved bytes [%s]%s%s",
                head, rel, tol, static_cast<long long>(made),
                replanned ? " AFTER THE FIRST CALL OF THIS BATCH SIZE" : "", needWork, reserved, chText.c_str(),
                k.ok() ? "" : (" run: " + kernelMsg(k)).c_str(), e == cudaSuccess ? "" : (" " + cudaMsg(e)).c_str());
            report(ok, std::string(line) + cmpErr);
        }
    }
    int64_t const total = cufftPlansCreated() - before;
    int64_t const expected = 2 * planLevels(Problem::kMaxBatch);
    report(total == expected,
        name + ": cuFFT plans made over 8 calls (batch 1,8,3,8 x fp32,fp16): " + std::to_string(total)
            + " (expected " + std::to_string(expected) + ": R2C+C2R for batch levels 1,2,4,8)");

    // The workspace check must be able to fail: one byte short is refused, nothing launched.
    {
        Geometry const g = geometryFor(p, 3);
        LaunchArgs a = launchArgs(p, g, false);
        bool covered = false;
        size_t const need = workspaceLayout(g, plansWorkBytes(plans, 3, covered)).totalBytes;
        a.workspaceBytes = need - 1;
        KernelResult const k = run(a, plans, stream);
        report(k.status == KernelStatus::kInvalidArgument,
            name + ": run() with a workspace 1 byte short of " + std::to_string(need) + " is refused ("
                + kernelMsg(k) + ")");
    }

    if (withGraph)
    {
        for (bool fp16 : {false, true})
        {
            std::string const head = name + (fp16 ? " fp16" : " fp32") + " batch=3 in a CUDA graph";
            Geometry const g = geometryFor(p, 3);
            int64_t const c0 = cufftPlansCreated();
            cudaGraph_t graph = nullptr;
            cudaGraphExec_t exec = nullptr;
            cudaError_t e = cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal);
            KernelResult k{};
            if (e == cudaSuccess)
            {
                k = run(launchArgs(p, g, fp16), plans, stream);
                e = cudaStreamEndCapture(stream, &graph);
            }
            int64_t const made = cufftPlansCreated() - c0;
            if (e == cudaSuccess && k.ok())
            {
                e = cudaGraphInstantiate(&exec, graph, 0);
            }
            double rel = NAN;
            std::string cmpErr;
            for (int replay = 0; replay < 2 && e == cudaSuccess && k.ok(); ++replay)
            {
                e = poisonOutputs(p, stream);
                if (e == cudaSuccess) e = cudaGraphLaunch(exec, stream);
                if (e == cudaSuccess) e = cudaStreamSynchronize(stream);
                if (e == cudaSuccess)
                {
                    double const r = compare(p, fp16, 3, channels, ref, cmpErr);
                    rel = replay == 0 ? r : std::max(rel, r);
                    if (std::isnan(r))
                    {
                        rel = r;
                        break;
                    }
                }
            }
            if (exec != nullptr) cudaGraphExecDestroy(exec);
            if (graph != nullptr) cudaGraphDestroy(graph);
            double const tol = fp16 ? 1e-2 : 1e-4;
            char line[512];
            std::snprintf(line, sizeof(line), "%s: captured, instantiated, replayed twice: rel err %.3g (tol %g), "
                "cuFFT plans made during capture %lld%s%s",
                head.c_str(), rel, tol, static_cast<long long>(made), k.ok() ? "" : (" run: " + kernelMsg(k)).c_str(),
                e == cudaSuccess ? "" : (" " + cudaMsg(e)).c_str());
            report(e == cudaSuccess && k.ok() && made == 0 && rel <= tol, std::string(line) + cmpErr);
            cudaGetLastError(); // clear a capture error so the next case starts clean
        }
    }
    destroyPlans(plans);
}

// ---- RFFT2 / IRFFT2 ---------------------------------------------------------------------------

struct SpectralShape
{
    int64_t c; //!< real channels (RFFT2 input C, IRFFT2 output C)
    int64_t h;
    int64_t w;
    bool s18;  //!< an aff_former_s18 stage map at 224 px (benchmarked by --bench-json)
};

std::vector<SpectralShape> spectralShapes()
{
    return {
        // aff_former_s18 @224 stage maps
        {64, 56, 56, true},
        {128, 28, 28, true},
        {320, 14, 14, true},
        {512, 7, 7, true},
        // odd sizes: odd W (no Nyquist column), odd H, non-square, 1-row and 1-column maps
        {3, 5, 7, false},
        {2, 6, 5, false},
        {5, 9, 9, false},
        {4, 1, 6, false},
        {2, 4, 1, false},
    };
}

//! One direction at one shape: batch 1 -> 8 -> 3 -> 8, fp32 and fp16, one set of plans.
void checkSpectral(SpectralShape const& s, Direction dir, cudaStream_t stream, std::mt19937& rng)
{
    constexpr int64_t kMaxBatch = 8;
    bool const fwd = dir == Direction::kForward;
    SpectralAttributes a;
    a.height = static_cast<int32_t>(s.h);
    a.width = static_cast<int32_t>(s.w);
    int64_t const half = a.specCols();
    int64_t const xc = fwd ? s.c : 2 * s.c;
    int64_t const xw = fwd ? s.w : half;
    int64_t const yc = fwd ? 2 * s.c : s.c;
    int64_t const yw = fwd ? half : s.w;
    char nameBuf[128];
    std::snprintf(nameBuf, sizeof(nameBuf), "%s C=%lld %lldx%lld", fwd ? "RFFT2" : "IRFFT2",
        static_cast<long long>(s.c), static_cast<long long>(s.h), static_cast<long long>(s.w));
    std::string const name = nameBuf;

    int64_t const xMax[4] = {kMaxBatch, xc, s.h, xw};
    Geometry gMax{};
    Result const pr = planSpectralGeometry(dir, a, xMax, gMax);
    if (!pr.ok())
    {
        report(false, name + ": planSpectralGeometry: " + pr.message);
        return;
    }
    size_t const nx = static_cast<size_t>(kMaxBatch * xc * s.h * xw);
    size_t const ny = static_cast<size_t>(kMaxBatch * yc * s.h * yw);
    std::normal_distribution<float> nd;
    std::vector<float> x(nx);
    std::vector<__half> xh(nx);
    for (size_t i = 0; i < nx; ++i)
    {
        xh[i] = __float2half_rn(nd(rng));
        x[i] = __half2float(xh[i]); // exactly representable in fp16: both runs see the same input
    }

    // Workspace as SpectralPlugin::getWorkspaceSize for max batch 8 (one direction's plans).
    std::vector<int64_t> table(static_cast<size_t>(planLevels(kMaxBatch)), 0);
    KernelResult k = queryWorkBytes(gMax, static_cast<int32_t>(table.size()), table.data(), planDirections(dir));
    if (!k.ok())
    {
        report(false, name + ": queryWorkBytes: " + kernelMsg(k));
        return;
    }
    bool covered = false;
    size_t const wsBytes = workspaceLayout(gMax, workReserveFor(table, kMaxBatch, covered)).totalBytes;
    DevBuf dx, dxh, dy, dyh, dws;
    cudaError_t e = dx.alloc(nx * sizeof(float));
    if (e == cudaSuccess) e = dxh.alloc(nx * sizeof(__half));
    if (e == cudaSuccess) e = dy.alloc(ny * sizeof(float));
    if (e == cudaSuccess) e = dyh.alloc(ny * sizeof(__half));
    if (e == cudaSuccess) e = dws.alloc(wsBytes);
    if (e == cudaSuccess) e = cudaMemcpy(dx.p, x.data(), nx * sizeof(float), cudaMemcpyHostToDevice);
    if (e == cudaSuccess) e = cudaMemcpy(dxh.p, xh.data(), nx * sizeof(__half), cudaMemcpyHostToDevice);
    if (e != cudaSuccess)
    {
        report(false, name + ": device set-up: " + cudaMsg(e));
        return;
    }

    // Reference (DFT sums, double) on every channel where cheap, else a spread subset.
    double const perPlane = static_cast<double>(s.h * half) * static_cast<double>(s.h * s.w);
    std::vector<int64_t> channels;
    if (perPlane * static_cast<double>(kMaxBatch * s.c) <= 2.5e8)
    {
        for (int64_t c = 0; c < s.c; ++c)
        {
            channels.push_back(c);
        }
    }
    else
    {
        for (int64_t c : std::set<int64_t>{0, 1, 2, 3, s.c / 2 + 1, s.c - 1})
        {
            channels.push_back(c);
        }
    }
    std::string const chText = channelsText(channels, s.c);
    int64_t const xPlane = s.h * xw;
    int64_t const yPlane = s.h * yw;
    std::vector<double> ref(ny, 0.0);
    std::vector<int64_t> outChannels; // output channels of one image that the reference fills
    for (int64_t c : channels)
    {
        outChannels.push_back(c);
        if (fwd)
        {
            outChannels.push_back(s.c + c);
        }
    }
    for (int64_t b = 0; b < kMaxBatch; ++b)
    {
        for (int64_t c : channels)
        {
            if (fwd)
            {
                std::vector<fftconv_ref::cd> const sp
                    = fftconv_ref::rfft2Ortho(&x[static_cast<size_t>((b * xc + c) * xPlane)], s.h, s.w);
                for (int64_t i = 0; i < yPlane; ++i)
                {
                    ref[static_cast<size_t>((b * yc + c) * yPlane + i)] = sp[static_cast<size_t>(i)].real();
                    ref[static_cast<size_t>((b * yc + s.c + c) * yPlane + i)] = sp[static_cast<size_t>(i)].imag();
                }
            }
            else
            {
                std::vector<fftconv_ref::cd> sp(static_cast<size_t>(xPlane));
                for (int64_t i = 0; i < xPlane; ++i)
                {
                    sp[static_cast<size_t>(i)] = fftconv_ref::cd(x[static_cast<size_t>((b * xc + c) * xPlane + i)],
                        x[static_cast<size_t>((b * xc + s.c + c) * xPlane + i)]);
                }
                std::vector<double> const r = fftconv_ref::irfft2Ortho(sp.data(), s.h, s.w);
                std::copy(r.begin(), r.end(), ref.begin() + (b * yc + c) * yPlane);
            }
        }
    }

    FftPlans plans;
    std::set<int64_t> seen;
    int64_t const before = cufftPlansCreated();
    for (bool fp16 : {false, true})
    {
        double const tol = fp16 ? 1e-2 : 1e-4;
        for (int64_t batch : {1, 8, 3, 8})
        {
            int64_t const xd[4] = {batch, xc, s.h, xw};
            Geometry g{};
            planSpectralGeometry(dir, a, xd, g); // validated for the max batch already
            char head[256];
            std::snprintf(head, sizeof(head), "%s %s batch=%lld", name.c_str(), fp16 ? "fp16" : "fp32",
                static_cast<long long>(batch));
            int64_t const c0 = cufftPlansCreated();
            k = ensurePlans(g, plans, nullptr, planDirections(dir));
            int64_t const made = cufftPlansCreated() - c0;
            bool const firstOfSize = seen.insert(batch).second;
            if (!k.ok())
            {
                report(false, std::string(head) + ": ensurePlans: " + kernelMsg(k));
                continue;
            }
            size_t const needWork = plansWorkBytes(plans, batch, covered);
            size_t const reserved = workReserveFor(table, batch, covered);
            SpectralLaunchArgs la;
            la.dir = dir;
            la.geom = g;
            la.io = fp16 ? IoType::kFloat16 : IoType::kFloat32;
            la.x = fp16 ? dxh.p : dx.p;
            la.y = fp16 ? dyh.p : dy.p;
            la.workspace = dws.p;
            la.workspaceBytes = workspaceLayout(g, reserved).totalBytes;
            e = cudaMemsetAsync(la.y, 0xFF, fp16 ? dyh.bytes : dy.bytes, stream); // NaN patterns
            k = runSpectral(la, plans, stream);
            if (e == cudaSuccess)
            {
                e = cudaStreamSynchronize(stream);
            }
            double rel = NAN;
            if (k.ok() && e == cudaSuccess)
            {
                size_t const n = static_cast<size_t>(batch * yc * yPlane);
                std::vector<double> got(n);
                if (fp16)
                {
                    std::vector<__half> y(n);
                    e = cudaMemcpy(y.data(), dyh.p, n * sizeof(__half), cudaMemcpyDeviceToHost);
                    std::transform(y.begin(), y.end(), got.begin(), [](__half v) { return __half2float(v); });
                }
                else
                {
                    std::vector<float> y(n);
                    e = cudaMemcpy(y.data(), dy.p, n * sizeof(float), cudaMemcpyDeviceToHost);
                    std::copy(y.begin(), y.end(), got.begin());
                }
                double num = 0;
                double den = 0;
                bool finite = true;
                for (int64_t b = 0; b < batch; ++b)
                {
                    for (int64_t oc : outChannels)
                    {
                        size_t const off = static_cast<size_t>((b * yc + oc) * yPlane);
                        for (int64_t i = 0; i < yPlane; ++i)
                        {
                            double const gv = got[off + static_cast<size_t>(i)];
                            double const wv = ref[off + static_cast<size_t>(i)];
                            finite = finite && std::isfinite(gv);
                            num = std::max(num, std::fabs(gv - wv));
                            den = std::max(den, std::fabs(wv));
                        }
                    }
                }
                rel = finite && e == cudaSuccess ? num / std::max(den, 1e-30) : NAN;
            }
            bool const replanned = !firstOfSize && made != 0;
            bool const ok = k.ok() && e == cudaSuccess && rel <= tol && !replanned && needWork <= reserved;
            char line[512];
            std::snprintf(line, sizeof(line),
                "%s: rel err %.3g (tol %g), cuFFT plans made %lld%s, work area %zu of %zu reserved bytes [%s]%s%s",
                head, rel, tol, static_cast<long long>(made),
                replanned ? " AFTER THE FIRST CALL OF THIS BATCH SIZE" : "", needWork, reserved, chText.c_str(),
                k.ok() ? "" : (" run: " + kernelMsg(k)).c_str(), e == cudaSuccess ? "" : (" " + cudaMsg(e)).c_str());
            report(ok, line);
        }
    }
    int64_t const total = cufftPlansCreated() - before;
    int64_t const expected = planLevels(kMaxBatch);
    report(total == expected,
        name + ": cuFFT plans made over 8 calls (batch 1,8,3,8 x fp32,fp16): " + std::to_string(total) + " (expected "
            + std::to_string(expected) + ": one " + (fwd ? "R2C" : "C2R") + " plan per batch level 1,2,4,8)");
    {
        int64_t const xd[4] = {3, xc, s.h, xw};
        Geometry g{};
        planSpectralGeometry(dir, a, xd, g);
        SpectralLaunchArgs la;
        la.dir = dir;
        la.geom = g;
        la.x = dx.p;
        la.y = dy.p;
        la.workspace = dws.p;
        size_t const need = workspaceLayout(g, plansWorkBytes(plans, 3, covered)).totalBytes;
        la.workspaceBytes = need - 1;
        k = runSpectral(la, plans, stream);
        report(k.status == KernelStatus::kInvalidArgument,
            name + ": runSpectral() with a workspace 1 byte short of " + std::to_string(need) + " is refused ("
                + kernelMsg(k) + ")");
    }
    destroyPlans(plans);
}

//! Median of ``reps`` timed calls of ``launch`` (after 5 warm-ups), each between two events
//! on ``stream``; false (and the last call's result in ``k``) when a call fails.
template <typename Launch>
bool medianMs(cudaStream_t stream, int reps, Launch&& launch, KernelResult& k, double& median)
{
    cudaEvent_t t0 = nullptr;
    cudaEvent_t t1 = nullptr;
    cudaEventCreate(&t0);
    cudaEventCreate(&t1);
    std::vector<float> ms;
    for (int i = 0; k.ok() && i < reps + 5; ++i)
    {
        cudaEventRecord(t0, stream);
        k = launch();
        cudaEventRecord(t1, stream);
        cudaEventSynchronize(t1);
        float t = 0;
        cudaEventElapsedTime(&t, t0, t1);
        if (i >= 5) // warm-up
        {
            ms.push_back(t);
        }
    }
    cudaEventDestroy(t0);
    cudaEventDestroy(t1);
    if (!k.ok() || ms.empty())
    {
        return false;
    }
    std::sort(ms.begin(), ms.end());
    median = ms.size() % 2 ? ms[ms.size() / 2] : 0.5 * (ms[ms.size() / 2 - 1] + ms[ms.size() / 2]);
    return true;
}

//! RFFT2 / IRFFT2 rows of --bench-json: runSpectral() at the aff_former_s18 stage maps, with the
//! workspace and plans SpectralPlugin makes for a profile of max batch 8.
int benchSpectral(cudaStream_t stream, int reps, std::mt19937& rng)
{
    constexpr int64_t kMaxBatch = 8;
    int status = 0;
    for (SpectralShape const& s : spectralShapes())
    {
        if (!s.s18)
        {
            continue;
        }
        for (Direction dir : {Direction::kForward, Direction::kInverse})
        {
            bool const fwd = dir == Direction::kForward;
            char nameBuf[128];
            std::snprintf(nameBuf, sizeof(nameBuf), "%s C=%lld %lldx%lld", fwd ? "RFFT2" : "IRFFT2",
                static_cast<long long>(s.c), static_cast<long long>(s.h), static_cast<long long>(s.w));
            SpectralAttributes a;
            a.height = static_cast<int32_t>(s.h);
            a.width = static_cast<int32_t>(s.w);
            int64_t const xc = fwd ? s.c : 2 * s.c;
            int64_t const xw = fwd ? s.w : a.specCols();
            int64_t const yc = fwd ? 2 * s.c : s.c;
            int64_t const yw = fwd ? a.specCols() : s.w;
            int64_t const xMax[4] = {kMaxBatch, xc, s.h, xw};
            Geometry gMax{};
            Result const pr = planSpectralGeometry(dir, a, xMax, gMax);
            std::vector<int64_t> table(static_cast<size_t>(planLevels(kMaxBatch)), 0);
            KernelResult k = pr.ok()
                ? queryWorkBytes(gMax, static_cast<int32_t>(table.size()), table.data(), planDirections(dir))
                : KernelResult{};
            if (!pr.ok() || !k.ok())
            {
                std::fprintf(stderr, "%s: %s\n", nameBuf, pr.ok() ? kernelMsg(k).c_str() : pr.message.c_str());
                status = 1;
                continue;
            }
            bool covered = false;
            size_t const wsBytes = workspaceLayout(gMax, workReserveFor(table, kMaxBatch, covered)).totalBytes;
            size_t const nx = static_cast<size_t>(kMaxBatch * xc * s.h * xw);
            size_t const ny = static_cast<size_t>(kMaxBatch * yc * s.h * yw);
            std::normal_distribution<float> nd;
            std::vector<float> x(nx);
            std::vector<__half> xh(nx);
            for (size_t i = 0; i < nx; ++i)
            {
                xh[i] = __float2half_rn(nd(rng));
                x[i] = __half2float(xh[i]);
            }
            DevBuf dx, dxh, dy, dyh, dws;
            cudaError_t e = dx.alloc(nx * sizeof(float));
            if (e == cudaSuccess) e = dxh.alloc(nx * sizeof(__half));
            if (e == cudaSuccess) e = dy.alloc(ny * sizeof(float));
            if (e == cudaSuccess) e = dyh.alloc(ny * sizeof(__half));
            if (e == cudaSuccess) e = dws.alloc(wsBytes);
            if (e == cudaSuccess) e = cudaMemcpy(dx.p, x.data(), nx * sizeof(float), cudaMemcpyHostToDevice);
            if (e == cudaSuccess) e = cudaMemcpy(dxh.p, xh.data(), nx * sizeof(__half), cudaMemcpyHostToDevice);
            if (e != cudaSuccess)
            {
                std::fprintf(stderr, "%s: device set-up: %s\n", nameBuf, cudaMsg(e).c_str());
                status = 1;
                continue;
            }
            FftPlans plans;
            for (int64_t batch : {1, 8})
            {
                for (bool fp16 : {false, true})
                {
                    int64_t const xd[4] = {batch, xc, s.h, xw};
                    Geometry g{};
                    planSpectralGeometry(dir, a, xd, g); // validated for the max batch above
                    k = ensurePlans(g, plans, nullptr, planDirections(dir));
                    SpectralLaunchArgs la;
                    la.dir = dir;
                    la.geom = g;
                    la.io = fp16 ? IoType::kFloat16 : IoType::kFloat32;
                    la.x = fp16 ? dxh.p : dx.p;
                    la.y = fp16 ? dyh.p : dy.p;
                    la.workspace = dws.p;
                    la.workspaceBytes = workspaceLayout(g, workReserveFor(table, batch, covered)).totalBytes;
                    double median = 0;
                    bool const ok = medianMs(stream, reps, [&] { return runSpectral(la, plans, stream); }, k, median);
                    e = cudaGetLastError();
                    if (!ok || e != cudaSuccess)
                    {
                        std::fprintf(stderr, "%s batch=%lld: %s %s\n", nameBuf, static_cast<long long>(batch),
                            kernelMsg(k).c_str(), cudaMsg(e).c_str());
                        status = 1;
                        continue;
                    }
                    std::printf("{\"op\": \"%s\", \"channels\": %lld, \"spatial\": [%lld, %lld], \"batch\": %lld, "
                                "\"dtype\": \"%s\", \"median_ms\": %.6f}\n",
                        fwd ? "RFFT2" : "IRFFT2", static_cast<long long>(s.c), static_cast<long long>(s.h),
                        static_cast<long long>(s.w), static_cast<long long>(batch), fp16 ? "fp16" : "fp32", median);
                    std::fflush(stdout);
                }
            }
            destroyPlans(plans);
        }
    }
    return status;
}

int bench(cudaStream_t stream, int reps, std::mt19937& rng)
{
    int status = 0;
    for (Shape const& s : shapes())
    {
        if (!s.s18)
        {
            continue;
        }
        Problem p;
        std::string const err = setup(p, s, false, rng); // timing only: Kf values do not matter
        if (!err.empty())
        {
            std::fprintf(stderr, "%s: %s\n", describe(s).c_str(), err.c_str());
            status = 1;
            continue;
        }
        FftPlans plans;
        for (int64_t batch : {1, 8})
        {
            for (bool fp16 : {false, true})
            {
                Geometry const g = geometryFor(p, batch);
                KernelResult k = ensurePlans(g, plans);
                LaunchArgs const a = launchArgs(p, g, fp16);
                double median = 0;
                bool const ok = medianMs(stream, reps, [&] { return run(a, plans, stream); }, k, median);
                cudaError_t const e = cudaGetLastError();
                if (!ok || e != cudaSuccess)
                {
                    std::fprintf(stderr, "%s batch=%lld: %s %s\n", describe(s).c_str(), static_cast<long long>(batch),
                        kernelMsg(k).c_str(), cudaMsg(e).c_str());
                    status = 1;
                    continue;
                }
                std::string kernel = s.mode != Mode::k1DBidir
                    ? "[" + std::to_string(s.kh) + ", " + std::to_string(s.kw) + "]"
                    : "[" + std::to_string(s.kw) + "]";
                std::printf("{\"op\": \"FFTConv\", \"mode\": \"%s\", \"channels\": %lld, \"spatial\": [%lld, %lld], \"kernel\": %s, "
                            "\"batch\": %lld, \"dtype\": \"%s\", \"median_ms\": %.6f}\n",
                    modeName(s.mode), static_cast<long long>(s.c), static_cast<long long>(s.h),
                    static_cast<long long>(s.w), kernel.c_str(), static_cast<long long>(batch), fp16 ? "fp16" : "fp32",
                    median);
                std::fflush(stdout);
            }
        }
        destroyPlans(plans);
    }
    return benchSpectral(stream, reps, rng) != 0 ? 1 : status;
}

void usage()
{
    std::printf(
        "usage: fftconv_gpu_check [--bench-json [--reps N]]\n"
        "  (no flag)     check the FFTConv, RFFT2 and IRFFT2 enqueue paths on the GPU against CPU references;\n"
        "                prints one line per case and 'N passed, M failed'; exit 0 only if all pass\n"
        "  --bench-json  time the plugin kernels (median of N runs, default 50) at batch 1 and 8, fp32 and\n"
        "                fp16: FFTConv at every S18 stage shape (2d, 1d_bidir, 2d_circular), RFFT2 and\n"
        "                IRFFT2 at the aff_former_s18 stage maps; one JSON object per line\n");
}

} // namespace

int main(int argc, char** argv)
{
    bool benchJson = false;
    int reps = 50;
    for (int i = 1; i < argc; ++i)
    {
        std::string const a = argv[i];
        if (a == "--bench-json")
        {
            benchJson = true;
        }
        else if (a == "--reps" && i + 1 < argc)
        {
            reps = std::max(1, std::atoi(argv[++i]));
        }
        else if (a == "--help" || a == "-h")
        {
            usage();
            return 0;
        }
        else
        {
            std::fprintf(stderr, "fftconv_gpu_check: unknown argument '%s'\n", a.c_str());
            usage();
            return 2;
        }
    }

    int devices = 0;
    cudaError_t e = cudaGetDeviceCount(&devices);
    if (e != cudaSuccess || devices == 0)
    {
        // (--bench-json keeps stdout for JSON lines only)
        std::fprintf(benchJson ? stderr : stdout, "FAIL no usable CUDA device: %s\n",
            e != cudaSuccess ? cudaMsg(e).c_str() : "cudaGetDeviceCount returned 0");
        if (!benchJson)
        {
            std::printf("0 passed, 1 failed\n");
        }
        return 2;
    }
    cudaDeviceProp prop{};
    cudaGetDeviceProperties(&prop, 0);
    std::fprintf(benchJson ? stderr : stdout, "device 0: %s (sm_%d%d), cuFFT work area in the workspace, "
        "plans per batch level\n", prop.name, prop.major, prop.minor);

    cudaStream_t stream = nullptr;
    e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
    if (e != cudaSuccess)
    {
        std::fprintf(benchJson ? stderr : stdout, "FAIL cudaStreamCreate: %s\n%s", cudaMsg(e).c_str(),
            benchJson ? "" : "0 passed, 1 failed\n");
        return 1;
    }
    std::mt19937 rng(20261203);
    if (benchJson)
    {
        int const rc = bench(stream, reps, rng);
        cudaStreamDestroy(stream);
        return rc;
    }
    for (Shape const& s : shapes())
    {
        // The graph capture runs once per mode (2d, 1d_bidir, 2d_circular), on the second stage shape.
        bool const graph = s.s18 && s.c == 128;
        checkShape(s, stream, rng, graph);
    }
    for (SpectralShape const& s : spectralShapes())
    {
        checkSpectral(s, Direction::kForward, stream, rng);
        checkSpectral(s, Direction::kInverse, stream, rng);
    }
    cudaStreamDestroy(stream);
    std::printf("%d passed, %d failed\n", gPassed, gFailed);
    return gFailed == 0 ? 0 : 1;
}
