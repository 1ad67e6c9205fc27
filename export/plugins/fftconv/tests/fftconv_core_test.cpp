// Tests of the FFTConv CPU core (no TensorRT, no CUDA). Plain C++17, own check macro.
//
// Besides planning, validation, workspace sizes and serialisation, it emulates the CUDA
// pipeline on the CPU with the same element-index helpers the kernels use (pad -> DFT ->
// multiply by Kf with the 1/N scale -> inverse DFT -> crop + D*x) and compares it with a
// direct convolution from the op's definition, for both modes.
#include "fftconv_core.h"
#include "fftconv_reference.h"
#include "spectral_core.h"
#include "test_check.h"

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace
{

#define CHECK_STATUS(expr, want)                                                                                       \
    do                                                                                                                 \
    {                                                                                                                  \
        ++gChecks;                                                                                                     \
        hyena::fftconv::Result const r_ = (expr);                                                                      \
        if (r_.status != (want))                                                                                       \
        {                                                                                                              \
            ++gFailures;                                                                                               \
            std::fprintf(stderr, "%s:%d: %s -> '%s' (%s), expected '%s'\n", __FILE__, __LINE__, #expr,                 \
                hyena::fftconv::statusName(r_.status), r_.message.c_str(), hyena::fftconv::statusName(want));          \
        }                                                                                                              \
    } while (0)

using namespace hyena::fftconv;

Attributes attrs2d(int kh, int kw, int nh, int nw)
{
    Attributes a;
    a.mode = Mode::k2D;
    a.kernelSize = {kh, kw};
    a.fftSize = {nh, nw};
    return a;
}

Attributes attrs1d(int k, int n)
{
    Attributes a;
    a.mode = Mode::k1DBidir;
    a.kernelSize = {k};
    a.fftSize = {n};
    return a;
}

Attributes attrsCircular(int h, int w)
{
    Attributes a;
    a.mode = Mode::k2DCircular;
    a.kernelSize = {h, w};
    a.fftSize = {h, w};
    return a;
}

int64_t fftSizeRule(int64_t n, int64_t k)
{
    return std::max(2 * n, k); // contract.fft_size
}

void testModeAndAttributes()
{
    Mode m{};
    CHECK_STATUS(parseMode("2d", m), Status::kOk);
    CHECK(m == Mode::k2D);
    CHECK_STATUS(parseMode("1d_bidir", m), Status::kOk);
    CHECK(m == Mode::k1DBidir);
    CHECK_STATUS(parseMode("2D", m), Status::kInvalidAttribute);
    CHECK_STATUS(parseMode("", m), Status::kInvalidAttribute);
    CHECK(std::string(modeName(Mode::k2D)) == "2d");
    CHECK(std::string(modeName(Mode::k1DBidir)) == "1d_bidir");

    CHECK_STATUS(validateAttributes(attrs2d(111, 111, 112, 112)), Status::kOk);
    CHECK_STATUS(validateAttributes(attrs1d(6271, 6272)), Status::kOk);
    CHECK_STATUS(validateAttributes(attrs2d(0, 3, 8, 8)), Status::kInvalidAttribute);    // k < 1
    CHECK_STATUS(validateAttributes(attrs2d(9, 9, 8, 16)), Status::kInvalidAttribute);   // fft < k
    CHECK_STATUS(validateAttributes(attrs2d(3, 3, 1, 8)), Status::kInvalidAttribute);    // fft < 2
    CHECK_STATUS(validateAttributes(attrs2d(3, 3, 1 << 25, 8)), Status::kInvalidAttribute); // too long
    CHECK_STATUS(validateAttributes(attrs2d(3, 3, 1 << 16, 1 << 16)), Status::kInvalidAttribute); // volume > int32
    Attributes bad = attrs2d(3, 3, 8, 8);
    bad.kernelSize = {3};
    CHECK_STATUS(validateAttributes(bad), Status::kInvalidAttribute); // rank mismatch
    bad = attrs1d(3, 8);
    bad.fftSize = {8, 8};
    CHECK_STATUS(validateAttributes(bad), Status::kInvalidAttribute);

    // From named fields, as the ONNX parser hands them over.
    AttrMap f;
    f[kFieldMode] = AttrValue::makeString("2d");
    f[kFieldKernelSize] = AttrValue::makeInts({13, 13});
    f[kFieldFftSize] = AttrValue::makeInts({14, 14});
    f["plugin_namespace"] = AttrValue::makeString("hyena"); // ignored
    Attributes a;
    CHECK_STATUS(parseAttributes(f, a), Status::kOk);
    CHECK(a == attrs2d(13, 13, 14, 14));

    AttrMap missing = f;
    missing.erase(kFieldFftSize);
    CHECK_STATUS(parseAttributes(missing, a), Status::kInvalidAttribute);
    AttrMap wrongKind = f;
    wrongKind[kFieldMode] = AttrValue::makeInts({2});
    CHECK_STATUS(parseAttributes(wrongKind, a), Status::kInvalidAttribute);
    AttrMap wrongKind2 = f;
    wrongKind2[kFieldKernelSize] = AttrValue::makeString("13");
    CHECK_STATUS(parseAttributes(wrongKind2, a), Status::kInvalidAttribute);
    AttrMap overflow = f;
    overflow[kFieldFftSize] = AttrValue::makeInts({int64_t{1} << 40, 14});
    CHECK_STATUS(parseAttributes(overflow, a), Status::kInvalidAttribute);
    AttrMap badMode = f;
    badMode[kFieldMode] = AttrValue::makeString("3d");
    CHECK_STATUS(parseAttributes(badMode, a), Status::kInvalidAttribute);

    // The state blob alone (engine deserialisation), and blob + agreeing/disagreeing fields.
    AttrMap blobOnly;
    blobOnly[kFieldState] = AttrValue::makeBytes(serializeAttributes(attrs1d(97, 98)));
    CHECK_STATUS(parseAttributes(blobOnly, a), Status::kOk);
    CHECK(a == attrs1d(97, 98));
    AttrMap both = f;
    both[kFieldState] = AttrValue::makeBytes(serializeAttributes(attrs2d(13, 13, 14, 14)));
    CHECK_STATUS(parseAttributes(both, a), Status::kOk);
    both[kFieldState] = AttrValue::makeBytes(serializeAttributes(attrs2d(13, 13, 26, 26)));
    CHECK_STATUS(parseAttributes(both, a), Status::kInvalidAttribute);
    AttrMap corrupt;
    std::vector<uint8_t> blob = serializeAttributes(attrs1d(97, 98));
    blob[blob.size() / 2] ^= 0x40;
    corrupt[kFieldState] = AttrValue::makeBytes(blob);
    CHECK_STATUS(parseAttributes(corrupt, a), Status::kCorruptBuffer);
}

void testInputsAndShapes()
{
    Attributes const a = attrs2d(111, 111, 112, 112); // hpx stage 0 at 224: H = W = 56
    TensorInfo x{{8, 64, 56, 56}, DType::kFloat32};
    TensorInfo kf{{64, 112, 57, 2}, DType::kFloat32};
    TensorInfo d{{64}, DType::kFloat32};
    CHECK_STATUS(checkInputs(a, x, kf, d), Status::kOk);
    CHECK(expectedKfShape(a, 64) == (std::vector<int64_t>{64, 112, 57, 2}));

    TensorInfo xh = x;
    xh.type = DType::kFloat16;
    CHECK_STATUS(checkInputs(a, xh, kf, d), Status::kOk);
    TensorInfo xo = x;
    xo.type = DType::kOther;
    CHECK_STATUS(checkInputs(a, xo, kf, d), Status::kUnsupportedType);
    TensorInfo kfh = kf;
    kfh.type = DType::kFloat16;
    CHECK_STATUS(checkInputs(a, x, kfh, d), Status::kUnsupportedType);
    TensorInfo dh = d;
    dh.type = DType::kFloat16;
    CHECK_STATUS(checkInputs(a, x, kf, dh), Status::kUnsupportedType);

    // Dynamic batch (and unknown spatial dims) at build time.
    TensorInfo xdyn{{-1, 64, -1, 56}, DType::kFloat32};
    CHECK_STATUS(checkInputs(a, xdyn, kf, d), Status::kOk);

    // Kf shape errors: channels, full (not half) spectrum, missing complex axis, rank.
    CHECK_STATUS(checkInputs(a, x, TensorInfo{{32, 112, 57, 2}, DType::kFloat32}, d), Status::kInvalidShape);
    CHECK_STATUS(checkInputs(a, x, TensorInfo{{64, 112, 112, 2}, DType::kFloat32}, d), Status::kInvalidShape);
    CHECK_STATUS(checkInputs(a, x, TensorInfo{{64, 112, 57}, DType::kFloat32}, d), Status::kInvalidShape);
    CHECK_STATUS(checkInputs(a, x, TensorInfo{{64, 56, 57, 2}, DType::kFloat32}, d), Status::kInvalidShape);
    // D shape errors.
    CHECK_STATUS(checkInputs(a, x, kf, TensorInfo{{63}, DType::kFloat32}), Status::kInvalidShape);
    CHECK_STATUS(checkInputs(a, x, kf, TensorInfo{{1, 64}, DType::kFloat32}), Status::kInvalidShape);
    // X rank.
    CHECK_STATUS(checkInputs(a, TensorInfo{{8, 64, 3136}, DType::kFloat32}, kf, d), Status::kInvalidShape);
    // Alias-free rule: Nh >= H + Kh/2. 112 >= 56 + 55 holds, 57 + 55 = 112 holds, 58 + 55 fails.
    CHECK_STATUS(checkInputs(a, TensorInfo{{1, 64, 57, 57}, DType::kFloat32}, kf, d), Status::kOk);
    CHECK_STATUS(checkInputs(a, TensorInfo{{1, 64, 58, 56}, DType::kFloat32}, kf, d), Status::kInvalidShape);
    CHECK_STATUS(checkInputs(a, TensorInfo{{1, 64, 56, 58}, DType::kFloat32}, kf, d), Status::kInvalidShape);

    // 1d_bidir: hb stage 3 at 224 (7x7 map, L=49, K=97, N=98).
    Attributes const b = attrs1d(97, 98);
    TensorInfo x1{{4, 512, 7, 7}, DType::kFloat16};
    TensorInfo kf1{{512, 50, 2}, DType::kFloat32};
    TensorInfo d1{{512}, DType::kFloat32};
    CHECK_STATUS(checkInputs(b, x1, kf1, d1), Status::kOk);
    CHECK(expectedKfShape(b, 512) == (std::vector<int64_t>{512, 50, 2}));
    CHECK_STATUS(checkInputs(b, x1, TensorInfo{{512, 49, 2}, DType::kFloat32}, d1), Status::kInvalidShape);
    CHECK_STATUS(checkInputs(b, x1, kf, d1), Status::kInvalidShape);
    CHECK_STATUS(checkInputs(b, TensorInfo{{4, 512, 7, 8}, DType::kFloat32}, kf1, d1), Status::kInvalidShape); // 56+48 > 98

    // Output shape rule.
    std::vector<int64_t> out;
    CHECK_STATUS(outputShape({-1, 64, 56, 56}, out), Status::kOk);
    CHECK(out == (std::vector<int64_t>{-1, 64, 56, 56}));
    CHECK_STATUS(outputShape({64, 56, 56}, out), Status::kInvalidShape);
}

void testGeometryWorkspaceAndPlanKey()
{
    Attributes const a = attrs2d(111, 111, 112, 112);
    int64_t const xd[4] = {2, 64, 56, 56};
    Geometry g{};
    CHECK_STATUS(planGeometry(a, xd, g), Status::kOk);
    CHECK(g.rank == 2 && g.batch == 2 && g.channels == 64);
    CHECK(g.rows == 56 && g.cols == 56 && g.fftRows == 112 && g.fftCols == 112 && g.specCols == 57);
    CHECK(g.cropRow == 55 && g.cropCol == 55);
    CHECK(std::fabs(g.scale - 1.0f / 12544.0f) < 1e-12f);
    CHECK(g.signals() == 128 && g.realPerSignal() == 12544 && g.complexPerSignal() == 112 * 57);

    WorkspaceLayout const w = workspaceLayout(g);
    CHECK(w.realOffset == 0);
    CHECK(w.realBytes == size_t{128} * 12544 * 4);             // 6,422,528 (a multiple of 256)
    CHECK(w.complexOffset == w.realBytes);
    CHECK(w.complexBytes == size_t{128} * 112 * 57 * 8);       // 6,537,216 (a multiple of 256)
    CHECK(w.totalBytes == w.realBytes + w.complexBytes);
    CHECK(workspaceBytesPerBatchItem(g) * 2 == w.totalBytes);
    CHECK(w.complexOffset % kWorkspaceAlignment == 0 && w.totalBytes % kWorkspaceAlignment == 0);

    // Odd sizes get padded up to the alignment.
    Attributes const small = attrs2d(3, 3, 6, 6);
    int64_t const xs[4] = {1, 1, 3, 3};
    Geometry gs{};
    CHECK_STATUS(planGeometry(small, xs, gs), Status::kOk);
    WorkspaceLayout const ws = workspaceLayout(gs);
    CHECK(ws.realBytes == 256 && ws.complexOffset == 256 && ws.complexBytes == 256 && ws.totalBytes == 512);

    // 1d_bidir: hb stage 0 at 224 (56x56 map, L=3136, K=6271, N=6272).
    Attributes const b = attrs1d(6271, 6272);
    int64_t const x1[4] = {1, 64, 56, 56};
    Geometry g1{};
    CHECK_STATUS(planGeometry(b, x1, g1), Status::kOk);
    CHECK(g1.rank == 1 && g1.rows == 1 && g1.cols == 3136 && g1.fftRows == 1 && g1.fftCols == 6272);
    CHECK(g1.specCols == 3137 && g1.cropRow == 0 && g1.cropCol == 3135);
    CHECK(workspaceLayout(g1).totalBytes == size_t{64} * 6272 * 4 + size_t{64} * 3137 * 8);

    // Plan key: the batch is not part of it (plans per batch level survive batch changes);
    // FFT sizes, channels or mode change it.
    int64_t const xSmaller[4] = {2, 64, 40, 50};
    Geometry g2{};
    CHECK_STATUS(planGeometry(a, xSmaller, g2), Status::kOk);
    CHECK(planKey(g2) == planKey(g));
    int64_t const xBatch[4] = {3, 64, 56, 56};
    Geometry g3{};
    CHECK_STATUS(planGeometry(a, xBatch, g3), Status::kOk);
    CHECK(planKey(g3) == planKey(g));
    CHECK(planKey(g3).channels == 64);
    int64_t const xChannels[4] = {2, 32, 56, 56};
    CHECK_STATUS(planGeometry(a, xChannels, g2), Status::kOk);
    CHECK(planKey(g2) != planKey(g));
    CHECK(planKey(g1).rank == 1 && planKey(g1).n0 == 6272 && planKey(g1).n1 == 0);
    CHECK(planKey(g1) != planKey(g));
    CHECK(!planKey(g).empty() && PlanKey{}.empty());

    // The cuFFT work area is the last, aligned slice.
    WorkspaceLayout const ww = workspaceLayout(g, 1000);
    CHECK(ww.realBytes == w.realBytes && ww.complexBytes == w.complexBytes);
    CHECK(ww.workOffset == w.complexOffset + w.complexBytes && ww.workBytes == 1024);
    CHECK(ww.totalBytes == w.totalBytes + 1024 && ww.workOffset % kWorkspaceAlignment == 0);
    CHECK(workspaceLayout(g, 0).totalBytes == w.totalBytes && workspaceLayout(g, 0).workBytes == 0);
    CHECK(workspaceLayout(g, 256).workBytes == 256);
    // The check run() makes: one byte short or a misaligned base is refused.
    CHECK_STATUS(checkWorkspace(g, 1000, ww.totalBytes, 4096), Status::kOk);
    CHECK_STATUS(checkWorkspace(g, 1000, ww.totalBytes - 1, 4096), Status::kInvalidShape);
    CHECK_STATUS(checkWorkspace(g, 1000, w.totalBytes, 4096), Status::kInvalidShape); // no room for cuFFT
    CHECK_STATUS(checkWorkspace(g, 0, w.totalBytes, 4096), Status::kOk);
    CHECK_STATUS(checkWorkspace(g, 0, w.totalBytes, 4096 + 128), Status::kInvalidShape);

    // Empty batch plans fine (nothing to launch); bad dims do not.
    int64_t const xEmpty[4] = {0, 64, 56, 56};
    CHECK_STATUS(planGeometry(a, xEmpty, g2), Status::kOk);
    CHECK(g2.signals() == 0 && workspaceLayout(g2).totalBytes == 0);
    CHECK(workspaceLayout(g2, 4096).totalBytes == 0); // no signals: no cuFFT call, no work area
    CHECK_STATUS(checkWorkspace(g2, 4096, 0, 0), Status::kOk);
    int64_t const xNeg[4] = {-1, 64, 56, 56};
    CHECK_STATUS(planGeometry(a, xNeg, g2), Status::kInvalidShape);
    int64_t const xTooBig[4] = {1, 64, 60, 56};
    CHECK_STATUS(planGeometry(a, xTooBig, g2), Status::kInvalidShape);
    int64_t const xHuge[4] = {int64_t{1} << 26, 64, 56, 56};
    CHECK_STATUS(planGeometry(a, xHuge, g2), Status::kInvalidShape); // N*C > int32
    CHECK_STATUS(planGeometry(attrs2d(3, 3, 2, 8), xs, g2), Status::kInvalidAttribute);
}

void testBatchChunksAndWorkTable()
{
    CHECK(planLevels(0) == 0 && planLevels(1) == 1 && planLevels(2) == 2 && planLevels(3) == 2);
    CHECK(planLevels(7) == 3 && planLevels(8) == 4 && planLevels(64) == 7 && planLevels(65) == 7);
    CHECK(batchChunks(0).empty());
    auto chunks = batchChunks(1);
    CHECK(chunks.size() == 1 && chunks[0].first == 0 && chunks[0].level == 0);
    chunks = batchChunks(8);
    CHECK(chunks.size() == 1 && chunks[0].first == 0 && chunks[0].level == 3);
    chunks = batchChunks(3);
    CHECK(chunks.size() == 2 && chunks[0].first == 0 && chunks[0].level == 1 && chunks[1].first == 2
        && chunks[1].level == 0);
    chunks = batchChunks(13); // 8 + 4 + 1
    CHECK(chunks.size() == 3 && chunks[0].level == 3 && chunks[1].first == 8 && chunks[1].level == 2
        && chunks[2].first == 12 && chunks[2].level == 0);
    // Every batch 1..200: the chunks tile [0, N) in order and only use levels < planLevels(N).
    for (int64_t n = 1; n <= 200; ++n)
    {
        int64_t next = 0;
        bool good = true;
        for (BatchChunk const& c : batchChunks(n))
        {
            good = good && c.first == next && c.level < planLevels(n);
            next += int64_t{1} << c.level;
        }
        CHECK(good && next == n);
    }

    // The work reserve for batch N: the largest table entry of levels 0..planLevels(N)-1.
    std::vector<int64_t> const table{512, 0, 4096, 1024};
    bool covered = false;
    CHECK(workReserveFor(table, 1, covered) == 512 && covered);
    CHECK(workReserveFor(table, 3, covered) == 512 && covered);
    CHECK(workReserveFor(table, 4, covered) == 4096 && covered);
    CHECK(workReserveFor(table, 15, covered) == 4096 && covered);
    CHECK(workReserveFor(table, 16, covered) == 4096 && !covered); // needs level 4
    CHECK(workReserveFor({}, 1, covered) == 0 && !covered);
    CHECK(workReserveFor({}, 0, covered) == 0 && covered);
    CHECK_STATUS(validateWorkTable(table), Status::kOk);
    CHECK_STATUS(validateWorkTable({}), Status::kOk);
    CHECK_STATUS(validateWorkTable({1, -1}), Status::kCorruptBuffer);
    CHECK_STATUS(validateWorkTable(std::vector<int64_t>(kMaxPlanLevels + 1, 0)), Status::kCorruptBuffer);
}

// The kernels use the index helpers with int32_t where kernelIndexFits32 allows: both
// instantiations must agree on every element.
void testIndexHelpers32And64()
{
    Attributes const a2 = attrs2d(9, 5, 12, 14);
    Attributes const a1 = attrs1d(29, 30);
    int64_t const x2[4] = {3, 5, 5, 7};
    int64_t const x1[4] = {2, 3, 3, 5};
    for (int m = 0; m < 2; ++m)
    {
        Geometry g{};
        CHECK_STATUS(planGeometry(m == 0 ? a2 : a1, m == 0 ? x2 : x1, g), Status::kOk);
        CHECK(kernelIndexFits32(g));
        bool same = true;
        for (int64_t i = 0; i < g.signals() * g.realPerSignal(); ++i)
        {
            int64_t s64 = -1;
            int32_t s32 = -1;
            bool const p64 = padSourceIndex(g, i, s64);
            bool const p32 = padSourceIndex(g, static_cast<int32_t>(i), s32);
            same = same && p64 == p32 && (!p64 || s64 == s32);
        }
        for (int64_t i = 0; i < g.signals() * g.complexPerSignal(); ++i)
        {
            same = same && filterIndex(g, i) == filterIndex(g, static_cast<int32_t>(i));
        }
        for (int64_t i = 0; i < g.signals() * g.outPerSignal(); ++i)
        {
            same = same && cropSourceIndex(g, i) == cropSourceIndex(g, static_cast<int32_t>(i))
                && channelOf(g, i) == channelOf(g, static_cast<int32_t>(i));
        }
        CHECK(same);
    }
    // Every S18 stage shape fits int32 indices up to batch 64; a huge batch does not.
    Geometry g{};
    int64_t const big2d[4] = {64, 64, 56, 56};
    CHECK_STATUS(planGeometry(attrs2d(111, 111, 112, 112), big2d, g), Status::kOk);
    CHECK(kernelIndexFits32(g));
    int64_t const big1d[4] = {64, 64, 56, 56};
    CHECK_STATUS(planGeometry(attrs1d(6271, 6272), big1d, g), Status::kOk);
    CHECK(kernelIndexFits32(g));
    int64_t const huge[4] = {2048, 64, 56, 56};
    CHECK_STATUS(planGeometry(attrs2d(111, 111, 112, 112), huge, g), Status::kOk);
    CHECK(!kernelIndexFits32(g));
}

void testSerialisation()
{
    for (Attributes const& a :
        {attrs2d(111, 111, 112, 112), attrs2d(13, 27, 14, 54), attrs1d(6271, 6272), attrsCircular(7, 5)})
    {
        std::vector<uint8_t> const blob = serializeAttributes(a);
        Attributes back;
        CHECK_STATUS(deserializeAttributes(blob.data(), blob.size(), back), Status::kOk);
        CHECK(back == a);
        CHECK(blob.size() >= 16);
        CHECK(std::memcmp(blob.data(), "HFCV", 4) == 0);
        CHECK(blob[4] == kSerialFormatVersion && blob[5] == 0);

        // Every truncation and every extension is rejected.
        for (size_t n = 0; n < blob.size(); ++n)
        {
            CHECK_STATUS(deserializeAttributes(blob.data(), n, back), Status::kCorruptBuffer);
        }
        std::vector<uint8_t> longer = blob;
        longer.push_back(0);
        CHECK_STATUS(deserializeAttributes(longer.data(), longer.size(), back), Status::kCorruptBuffer);
        // Every single-bit flip is rejected (magic, version, size, payload or checksum).
        for (size_t i = 0; i < blob.size(); ++i)
        {
            for (int bit = 0; bit < 8; ++bit)
            {
                std::vector<uint8_t> bad = blob;
                bad[i] ^= static_cast<uint8_t>(1u << bit);
                Result const r = deserializeAttributes(bad.data(), bad.size(), back);
                ++gChecks;
                if (r.ok())
                {
                    ++gFailures;
                    std::fprintf(stderr, "bit flip at byte %zu bit %d accepted\n", i, bit);
                }
            }
        }
    }
    Attributes back;
    CHECK_STATUS(deserializeAttributes(nullptr, 0, back), Status::kCorruptBuffer);

    // A future format version is refused even with a valid checksum.
    std::vector<uint8_t> blob = serializeAttributes(attrs1d(97, 98));
    blob[4] = 2;
    CHECK_STATUS(deserializeAttributes(blob.data(), blob.size(), back), Status::kCorruptBuffer);

    // A well-formed blob holding invalid attributes (fft < kernel) is refused: hand-made
    // with a correct checksum via serializeAttributes of the raw struct.
    Attributes invalid = attrs1d(99, 98);
    std::vector<uint8_t> const ib = serializeAttributes(invalid);
    CHECK_STATUS(deserializeAttributes(ib.data(), ib.size(), back), Status::kCorruptBuffer);
}

// ---- CPU emulation of the CUDA pipeline, checked against a direct convolution ----------
// (naive DFT emulation, Kf and direct convolution from fftconv_reference.h)
using fftconv_ref::emulatePipeline;
using fftconv_ref::makeKf;
using fftconv_ref::maxRelError;

void testPipeline2d(int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw)
{
    std::mt19937 rng(1234);
    std::normal_distribution<float> nd;
    Attributes const a = attrs2d(static_cast<int32_t>(kh), static_cast<int32_t>(kw),
        static_cast<int32_t>(fftSizeRule(h, kh)), static_cast<int32_t>(fftSizeRule(w, kw)));
    int64_t const xd[4] = {n, c, h, w};
    Geometry g{};
    CHECK_STATUS(planGeometry(a, xd, g), Status::kOk);
    std::vector<float> x(static_cast<size_t>(n * c * h * w)), k(static_cast<size_t>(c * kh * kw)), d(c);
    for (auto* v : {&x, &k, &d})
    {
        for (auto& e : *v)
        {
            e = nd(rng);
        }
    }
    std::vector<float> const kf = makeKf(k, c, kh, kw, g.fftRows, g.fftCols);
    CHECK(static_cast<int64_t>(kf.size()) == c * g.complexPerSignal() * 2);
    std::vector<double> const got = emulatePipeline(g, x, kf, d);

    // Direct centred convolution: y[i,j] = sum_{p,q} k[i-p+kh/2, j-q+kw/2] x[p,q] + D x[i,j].
    std::vector<double> want(got.size());
    for (int64_t s = 0; s < n * c; ++s)
    {
        int64_t const ch = s % c;
        fftconv_ref::directConv2d(&x[static_cast<size_t>(s * h * w)], &k[static_cast<size_t>(ch * kh * kw)], d[ch], h,
            w, kh, kw, &want[static_cast<size_t>(s * h * w)]);
    }
    double const err = maxRelError(got, want);
    ++gChecks;
    if (!(err < 1e-5))
    {
        ++gFailures;
        std::fprintf(stderr, "2d pipeline n=%lld c=%lld h=%lld w=%lld k=%lldx%lld: rel err %g\n",
            static_cast<long long>(n), static_cast<long long>(c), static_cast<long long>(h),
            static_cast<long long>(w), static_cast<long long>(kh), static_cast<long long>(kw), err);
    }
}

void testPipeline1d(int64_t n, int64_t c, int64_t h, int64_t w, int64_t kLen)
{
    std::mt19937 rng(99);
    std::normal_distribution<float> nd;
    int64_t const len = h * w;
    Attributes const a = attrs1d(static_cast<int32_t>(kLen), static_cast<int32_t>(fftSizeRule(len, kLen)));
    int64_t const xd[4] = {n, c, h, w};
    Geometry g{};
    CHECK_STATUS(planGeometry(a, xd, g), Status::kOk);
    std::vector<float> x(static_cast<size_t>(n * c * len)), k(static_cast<size_t>(c * kLen)), d(c);
    for (auto* v : {&x, &k, &d})
    {
        for (auto& e : *v)
        {
            e = nd(rng);
        }
    }
    std::vector<float> const kf = makeKf(k, c, 1, kLen, 1, g.fftCols);
    CHECK(static_cast<int64_t>(kf.size()) == c * (g.fftCols / 2 + 1) * 2);
    std::vector<double> const got = emulatePipeline(g, x, kf, d);
    std::vector<double> want(got.size());
    for (int64_t s = 0; s < n * c; ++s)
    {
        int64_t const ch = s % c;
        fftconv_ref::directConv1d(&x[static_cast<size_t>(s * len)], &k[static_cast<size_t>(ch * kLen)], d[ch], len, kLen,
            &want[static_cast<size_t>(s * len)]);
    }
    double const err = maxRelError(got, want);
    ++gChecks;
    if (!(err < 1e-5))
    {
        ++gFailures;
        std::fprintf(stderr, "1d pipeline n=%lld c=%lld L=%lld K=%lld: rel err %g\n", static_cast<long long>(n),
            static_cast<long long>(c), static_cast<long long>(len), static_cast<long long>(kLen), err);
    }
}


// ---- 2d_circular ------------------------------------------------------------------------
void testCircularMode()
{
    Mode m{};
    CHECK_STATUS(parseMode("2d_circular", m), Status::kOk);
    CHECK(m == Mode::k2DCircular && std::string(modeName(m)) == "2d_circular" && modeRank(m) == 2);
    CHECK_STATUS(validateAttributes(attrsCircular(56, 56)), Status::kOk);
    CHECK_STATUS(validateAttributes(attrsCircular(7, 5)), Status::kOk);
    Attributes bad = attrsCircular(14, 14);
    bad.kernelSize = {13, 13}; // a smaller filter is not the circular contract
    CHECK_STATUS(validateAttributes(bad), Status::kInvalidAttribute);
    bad = attrsCircular(14, 14);
    bad.fftSize = {28, 28};
    bad.kernelSize = {28, 28};
    CHECK_STATUS(validateAttributes(bad), Status::kOk); // fft == kernel: valid on its own ...
    TensorInfo const x14{{2, 320, 14, 14}, DType::kFloat32};
    TensorInfo const d320{{320}, DType::kFloat32};
    // ... but X must then be 28x28: the map is the transform.
    CHECK_STATUS(checkInputs(bad, x14, TensorInfo{{320, 28, 15, 2}, DType::kFloat32}, d320), Status::kInvalidShape);

    // Fields as the ONNX node carries them, spatial_size included (it must equal fft_size).
    AttrMap f;
    f[kFieldMode] = AttrValue::makeString("2d_circular");
    f[kFieldKernelSize] = AttrValue::makeInts({14, 14});
    f[kFieldFftSize] = AttrValue::makeInts({14, 14});
    f[kFieldSpatialSize] = AttrValue::makeInts({14, 14});
    Attributes a;
    CHECK_STATUS(parseAttributes(f, a), Status::kOk);
    CHECK(a == attrsCircular(14, 14));
    AttrMap other = f;
    other[kFieldSpatialSize] = AttrValue::makeInts({14, 13});
    CHECK_STATUS(parseAttributes(other, a), Status::kInvalidAttribute);
    other[kFieldSpatialSize] = AttrValue::makeString("14");
    CHECK_STATUS(parseAttributes(other, a), Status::kInvalidAttribute);
    AttrMap noSpatial = f;
    noSpatial.erase(kFieldSpatialSize);
    CHECK_STATUS(parseAttributes(noSpatial, a), Status::kOk); // optional
    // A linear mode ignores spatial_size (its map size comes from X).
    AttrMap linear;
    linear[kFieldMode] = AttrValue::makeString("2d");
    linear[kFieldKernelSize] = AttrValue::makeInts({13, 13});
    linear[kFieldFftSize] = AttrValue::makeInts({14, 14});
    linear[kFieldSpatialSize] = AttrValue::makeInts({7, 7});
    CHECK_STATUS(parseAttributes(linear, a), Status::kOk);
    // The state blob of a circular plugin, alone and with a disagreeing spatial_size.
    AttrMap blob;
    blob[kFieldState] = AttrValue::makeBytes(serializeAttributes(attrsCircular(14, 14)));
    CHECK_STATUS(parseAttributes(blob, a), Status::kOk);
    CHECK(a == attrsCircular(14, 14));
    blob[kFieldSpatialSize] = AttrValue::makeInts({7, 7});
    CHECK_STATUS(parseAttributes(blob, a), Status::kInvalidAttribute);

    // Inputs: Kf is the map-size half spectrum; X must be exactly the map.
    Attributes const c = attrsCircular(14, 14);
    TensorInfo const kf{{320, 14, 8, 2}, DType::kFloat32};
    CHECK(expectedKfShape(c, 320) == (std::vector<int64_t>{320, 14, 8, 2}));
    CHECK_STATUS(checkInputs(c, x14, kf, d320), Status::kOk);
    CHECK_STATUS(checkInputs(c, TensorInfo{{-1, 320, -1, 14}, DType::kFloat16}, kf, d320), Status::kOk);
    CHECK_STATUS(checkInputs(c, TensorInfo{{2, 320, 13, 14}, DType::kFloat32}, kf, d320), Status::kInvalidShape);
    CHECK_STATUS(checkInputs(c, TensorInfo{{2, 320, 14, 7}, DType::kFloat32}, kf, d320), Status::kInvalidShape);
    CHECK_STATUS(checkInputs(c, x14, TensorInfo{{320, 28, 15, 2}, DType::kFloat32}, d320), Status::kInvalidShape);

    // Geometry: crop start 0 (k//2 in the linear modes), fft = map, same plan key rule.
    int64_t const xd[4] = {2, 320, 14, 14};
    Geometry g{};
    CHECK_STATUS(planGeometry(c, xd, g), Status::kOk);
    CHECK(g.rank == 2 && g.rows == 14 && g.cols == 14 && g.fftRows == 14 && g.fftCols == 14 && g.specCols == 8);
    CHECK(g.cropRow == 0 && g.cropCol == 0 && std::fabs(g.scale - 1.0f / 196.0f) < 1e-12f);
    CHECK(workspaceLayout(g).realBytes == size_t{640} * 196 * 4);
    int64_t const xOdd[4] = {1, 3, 7, 5};
    CHECK_STATUS(planGeometry(attrsCircular(7, 5), xOdd, g), Status::kOk);
    CHECK(g.specCols == 3 && g.cropRow == 0 && g.cropCol == 0);
    // The pad kernel is a copy and the crop an identity here.
    bool identity = true;
    for (int64_t i = 0; i < g.signals() * g.realPerSignal(); ++i)
    {
        int64_t src = -1;
        identity = identity && padSourceIndex(g, i, src) && src == i && cropSourceIndex(g, i) == i;
    }
    CHECK(identity);
}

void testPipelineCircular(int64_t n, int64_t c, int64_t h, int64_t w)
{
    std::mt19937 rng(4321);
    std::normal_distribution<float> nd;
    Attributes const a = attrsCircular(static_cast<int32_t>(h), static_cast<int32_t>(w));
    int64_t const xd[4] = {n, c, h, w};
    Geometry g{};
    CHECK_STATUS(planGeometry(a, xd, g), Status::kOk);
    std::vector<float> x(static_cast<size_t>(n * c * h * w)), k(static_cast<size_t>(c * h * w)), d(c);
    for (auto* v : {&x, &k, &d})
    {
        for (auto& e : *v)
        {
            e = nd(rng);
        }
    }
    // Kf: the unpadded rfft2 of the map-size filter (zero padding to (h, w) is no padding).
    std::vector<float> const kf = makeKf(k, c, h, w, h, w);
    std::vector<double> const got = emulatePipeline(g, x, kf, d);
    std::vector<double> want(got.size());
    for (int64_t s = 0; s < n * c; ++s)
    {
        int64_t const ch = s % c;
        fftconv_ref::directCircularConv2d(&x[static_cast<size_t>(s * h * w)], &k[static_cast<size_t>(ch * h * w)],
            d[ch], h, w, &want[static_cast<size_t>(s * h * w)]);
    }
    double const err = maxRelError(got, want);
    ++gChecks;
    if (!(err < 1e-5))
    {
        ++gFailures;
        std::fprintf(stderr, "2d_circular pipeline n=%lld c=%lld h=%lld w=%lld: rel err %g\n",
            static_cast<long long>(n), static_cast<long long>(c), static_cast<long long>(h),
            static_cast<long long>(w), err);
    }
}

// ---- RFFT2 / IRFFT2 ----------------------------------------------------------------------------
SpectralAttributes spectral(int h, int w)
{
    SpectralAttributes a;
    a.height = h;
    a.width = w;
    return a;
}

void testSpectralCore()
{
    CHECK(std::string(directionPluginName(Direction::kForward)) == "RFFT2");
    CHECK(std::string(directionPluginName(Direction::kInverse)) == "IRFFT2");
    AttrMap f;
    f[kFieldSpatialSize] = AttrValue::makeInts({14, 7});
    f["plugin_namespace"] = AttrValue::makeString("hyena"); // ignored
    SpectralAttributes a;
    CHECK_STATUS(parseSpectralAttributes(f, a), Status::kOk);
    CHECK(a == spectral(14, 7) && a.specCols() == 4);
    CHECK_STATUS(parseSpectralAttributes(AttrMap{}, a), Status::kInvalidAttribute);
    AttrMap bad = f;
    bad[kFieldSpatialSize] = AttrValue::makeInts({14});
    CHECK_STATUS(parseSpectralAttributes(bad, a), Status::kInvalidAttribute);
    bad[kFieldSpatialSize] = AttrValue::makeInts({14, 0});
    CHECK_STATUS(parseSpectralAttributes(bad, a), Status::kInvalidAttribute);
    bad[kFieldSpatialSize] = AttrValue::makeInts({int64_t{1} << 40, 7});
    CHECK_STATUS(parseSpectralAttributes(bad, a), Status::kInvalidAttribute);
    bad[kFieldSpatialSize] = AttrValue::makeInts({1 << 16, 1 << 16}); // volume > int32
    CHECK_STATUS(parseSpectralAttributes(bad, a), Status::kInvalidAttribute);
    bad[kFieldSpatialSize] = AttrValue::makeString("14,7");
    CHECK_STATUS(parseSpectralAttributes(bad, a), Status::kInvalidAttribute);

    // Inputs: RFFT2 takes (N, C, H, W), IRFFT2 (N, 2C, H, W/2+1); -1 dims pass.
    SpectralAttributes const s = spectral(14, 7);
    CHECK_STATUS(checkSpectralInput(Direction::kForward, s, TensorInfo{{2, 320, 14, 7}, DType::kFloat32}), Status::kOk);
    CHECK_STATUS(checkSpectralInput(Direction::kForward, s, TensorInfo{{-1, 3, 14, 7}, DType::kFloat16}), Status::kOk);
    CHECK_STATUS(checkSpectralInput(Direction::kForward, s, TensorInfo{{2, 3, 14, 4}, DType::kFloat32}),
        Status::kInvalidShape);
    CHECK_STATUS(checkSpectralInput(Direction::kForward, s, TensorInfo{{2, 3, 7, 7}, DType::kFloat32}),
        Status::kInvalidShape);
    CHECK_STATUS(checkSpectralInput(Direction::kForward, s, TensorInfo{{2, 3, 14, 7}, DType::kOther}),
        Status::kUnsupportedType);
    CHECK_STATUS(checkSpectralInput(Direction::kForward, s, TensorInfo{{2, 14, 7}, DType::kFloat32}),
        Status::kInvalidShape);
    CHECK_STATUS(checkSpectralInput(Direction::kInverse, s, TensorInfo{{2, 6, 14, 4}, DType::kFloat32}), Status::kOk);
    CHECK_STATUS(checkSpectralInput(Direction::kInverse, s, TensorInfo{{2, -1, 14, 4}, DType::kFloat32}), Status::kOk);
    CHECK_STATUS(checkSpectralInput(Direction::kInverse, s, TensorInfo{{2, 5, 14, 4}, DType::kFloat32}),
        Status::kInvalidShape); // odd: no planar halves
    CHECK_STATUS(checkSpectralInput(Direction::kInverse, s, TensorInfo{{2, 6, 14, 7}, DType::kFloat32}),
        Status::kInvalidShape); // W given instead of W/2+1
    // W = 6 and W = 7 share W/2+1 = 4: only spatial_size tells IRFFT2 which one to make.
    std::vector<int64_t> out;
    CHECK_STATUS(spectralOutputShape(Direction::kForward, s, {-1, 320, 14, 7}, out), Status::kOk);
    CHECK(out == (std::vector<int64_t>{-1, 640, 14, 4}));
    CHECK_STATUS(spectralOutputShape(Direction::kInverse, s, {8, 640, 14, 4}, out), Status::kOk);
    CHECK(out == (std::vector<int64_t>{8, 320, 14, 7}));
    CHECK_STATUS(spectralOutputShape(Direction::kInverse, spectral(14, 6), {8, 640, 14, 4}, out), Status::kOk);
    CHECK(out == (std::vector<int64_t>{8, 320, 14, 6}));
    CHECK_STATUS(spectralOutputShape(Direction::kInverse, s, {8, -1, 14, 4}, out), Status::kOk);
    CHECK(out[1] == -1);
    CHECK_STATUS(spectralOutputShape(Direction::kForward, s, {8, 14, 4}, out), Status::kInvalidShape);

    // Geometry: an FFTConv geometry with transform = map, no crop, ortho scale; channels are
    // the complex signals per image (C, not 2C, for IRFFT2).
    int64_t const xf[4] = {3, 320, 14, 7};
    Geometry g{};
    CHECK_STATUS(planSpectralGeometry(Direction::kForward, s, xf, g), Status::kOk);
    CHECK(g.rank == 2 && g.batch == 3 && g.channels == 320 && g.rows == 14 && g.cols == 7 && g.fftRows == 14
        && g.fftCols == 7 && g.specCols == 4 && g.cropRow == 0 && g.cropCol == 0);
    CHECK(std::fabs(g.scale - static_cast<float>(1.0 / std::sqrt(98.0))) < 1e-9f);
    int64_t const xi[4] = {3, 640, 14, 4};
    Geometry gi{};
    CHECK_STATUS(planSpectralGeometry(Direction::kInverse, s, xi, gi), Status::kOk);
    CHECK(gi.channels == 320 && planKey(gi) == planKey(g));
    // Workspace: [fp32 planes | interleaved spectra | cuFFT work], as FFTConv's.
    WorkspaceLayout const w = workspaceLayout(g, 1000);
    CHECK(w.realBytes == size_t{960} * 98 * 4 && w.complexBytes == size_t{960} * 14 * 4 * 8);
    CHECK(w.workOffset == w.realBytes + w.complexBytes && w.workBytes == 1024);
    int64_t const xBad[4] = {3, 641, 14, 4};
    CHECK_STATUS(planSpectralGeometry(Direction::kInverse, s, xBad, gi), Status::kInvalidShape);
    int64_t const xNeg[4] = {-1, 320, 14, 7};
    CHECK_STATUS(planSpectralGeometry(Direction::kForward, s, xNeg, gi), Status::kInvalidShape);
    int64_t const xEmpty[4] = {0, 320, 14, 7};
    CHECK_STATUS(planSpectralGeometry(Direction::kForward, s, xEmpty, gi), Status::kOk);
    CHECK(gi.signals() == 0 && workspaceLayout(gi, 4096).totalBytes == 0);

    // Index helpers: unpack/pack are inverse permutations of the planar <-> interleaved
    // layouts, and 32/64-bit index math agree.
    int64_t const xs[4] = {2, 3, 5, 6};
    CHECK_STATUS(planSpectralGeometry(Direction::kForward, spectral(5, 6), xs, g), Status::kOk);
    std::vector<int> hits(static_cast<size_t>(g.signals() * 2 * g.complexPerSignal()), 0);
    bool same = true;
    for (int64_t o = 0; o < static_cast<int64_t>(hits.size()); ++o)
    {
        bool imag = false;
        bool imag32 = false;
        int64_t const sIdx = planarToSpectrum(g, o, imag);
        same = same && planarToSpectrum(g, static_cast<int32_t>(o), imag32) == sIdx && imag32 == imag;
        int64_t re = 0;
        int64_t im = 0;
        spectrumToPlanar(g, sIdx, re, im);
        same = same && (imag ? im : re) == o;
        hits[static_cast<size_t>(2 * sIdx + (imag ? 1 : 0))]++;
    }
    CHECK(same && std::all_of(hits.begin(), hits.end(), [](int v) { return v == 1; }));
    // Real columns: DC always, Nyquist for even W; the mirror row stays in its signal/column.
    bool cols = true;
    for (int64_t i = 0; i < g.signals() * g.complexPerSignal(); ++i)
    {
        int64_t const col = i % g.specCols;
        int64_t const row = (i / g.specCols) % g.fftRows;
        cols = cols && isRealColumn(g, i) == (col == 0 || col == 3);
        int64_t const j = i + mirrorRowOffset(g, i);
        cols = cols && j / g.complexPerSignal() == i / g.complexPerSignal() && j % g.specCols == col
            && (j / g.specCols) % g.fftRows == (g.fftRows - row) % g.fftRows
            && mirrorRowOffset(g, static_cast<int32_t>(i)) == mirrorRowOffset(g, i);
    }
    CHECK(cols);
    int64_t const xo[4] = {1, 1, 4, 7};
    CHECK_STATUS(planSpectralGeometry(Direction::kForward, spectral(4, 7), xo, g), Status::kOk);
    CHECK(isRealColumn(g, int64_t{0}) && !isRealColumn(g, int64_t{3}) && isRealColumn(g, int64_t{4})); // odd W: no Nyquist
}

void reportError(char const* what, int64_t n, int64_t c, int64_t h, int64_t w, double err, double tol)
{
    ++gChecks;
    if (!(err < tol))
    {
        ++gFailures;
        std::fprintf(stderr, "%s n=%lld c=%lld h=%lld w=%lld: rel err %g (tol %g)\n", what, static_cast<long long>(n),
            static_cast<long long>(c), static_cast<long long>(h), static_cast<long long>(w), err, tol);
    }
}

// The kernel pipelines (emulated with the index helpers and a naive DFT) against the DFT
// sums; IRFFT2 on a random, non-Hermitian planar input, so the DC/Nyquist handling counts.
void testSpectralPipelines(int64_t n, int64_t c, int64_t h, int64_t w)
{
    std::mt19937 rng(static_cast<unsigned>(7 * h + w));
    std::normal_distribution<float> nd;
    SpectralAttributes const a = spectral(static_cast<int>(h), static_cast<int>(w));
    int64_t const xf[4] = {n, c, h, w};
    Geometry g{};
    CHECK_STATUS(planSpectralGeometry(Direction::kForward, a, xf, g), Status::kOk);
    std::vector<float> x(static_cast<size_t>(n * c * h * w));
    for (auto& e : x)
    {
        e = nd(rng);
    }
    std::vector<double> const spec = fftconv_ref::emulateRfft2(g, x);
    reportError("RFFT2 emulation vs DFT", n, c, h, w, maxRelError(spec, fftconv_ref::referenceRfft2(x, n, c, h, w)), 1e-6);

    int64_t const xi[4] = {n, 2 * c, h, a.specCols()};
    Geometry gi{};
    CHECK_STATUS(planSpectralGeometry(Direction::kInverse, a, xi, gi), Status::kOk);
    std::vector<float> p(static_cast<size_t>(n * 2 * c * h * a.specCols()));
    for (auto& e : p)
    {
        e = nd(rng);
    }
    reportError("IRFFT2 emulation vs DFT (non-Hermitian input)", n, c, h, w,
        maxRelError(fftconv_ref::emulateIrfft2(gi, p), fftconv_ref::referenceIrfft2(p, n, c, h, w)), 1e-6);

    // Round trip: IRFFT2(RFFT2(x)) == x (ortho in both directions).
    std::vector<float> specF(spec.begin(), spec.end());
    std::vector<double> const back = fftconv_ref::emulateIrfft2(gi, specF);
    std::vector<double> const xd(x.begin(), x.end());
    reportError("IRFFT2(RFFT2(x)) vs x", n, c, h, w, maxRelError(back, xd), 1e-5);
}

} // namespace

int main()
{
    testModeAndAttributes();
    testInputsAndShapes();
    testGeometryWorkspaceAndPlanKey();
    testBatchChunksAndWorkTable();
    testIndexHelpers32And64();
    testSerialisation();
    // Kernel index math + scale, emulated on the CPU: global filters (K = 2n-1), small
    // filters (K < n, fft = 2n), non-square maps and filters, even kernel sizes.
    testPipeline2d(2, 3, 5, 5, 9, 9);
    testPipeline2d(1, 2, 6, 4, 3, 5);
    testPipeline2d(2, 1, 3, 7, 5, 13);
    testPipeline2d(1, 2, 4, 4, 4, 2);
    testPipeline1d(2, 3, 3, 3, 17);
    testPipeline1d(1, 2, 2, 5, 7);
    testPipeline1d(1, 1, 3, 4, 6);
    testCircularMode();
    // 2d_circular: square and non-square, odd and even sizes, a 1-row map.
    testPipelineCircular(2, 3, 7, 7);
    testPipelineCircular(1, 2, 6, 4);
    testPipelineCircular(2, 1, 5, 8);
    testPipelineCircular(1, 2, 1, 6);
    testSpectralCore();
    // RFFT2/IRFFT2: even and odd W and H, 1-row and 1-column maps.
    testSpectralPipelines(2, 3, 4, 6);
    testSpectralPipelines(1, 2, 5, 7);
    testSpectralPipelines(2, 1, 3, 8);
    testSpectralPipelines(1, 2, 6, 5);
    testSpectralPipelines(1, 1, 1, 6);
    testSpectralPipelines(1, 2, 4, 1);
    if (gFailures != 0)
    {
        std::fprintf(stderr, "fftconv_core_test: %d of %d checks FAILED\n", gFailures, gChecks);
        return 1;
    }
    std::printf("fftconv_core_test: all %d checks passed\n", gChecks);
    return 0;
}
