// fftconv_emulate: the CPU emulation of the plugins' kernel pipelines as a filter program, so
// that a test in another language (tests/test_trt_plugin_build.py) can hold the plugin's
// planning + index math against the torch ops of the same contract.
//
// stdin: one text line, then the inputs as raw little-endian float32:
//   "rfft2 N C H W\n"                 X (N, C, H, W)
//   "irfft2 N C H W\n"                X (N, 2C, H, W/2+1) planar
//   "fftconv MODE N C H W NK K.. NF F..\n"   X (N, C, H, W), Kf (expected shape), D (C)
// stdout: Y as raw float64 (the plugin's output layout). Exit 1 with a message on stderr
// when the core refuses the attributes or shapes, or the input is short.
#include "fftconv_core.h"
#include "fftconv_reference.h"
#include "spectral_core.h"

#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

using namespace hyena::fftconv;

namespace
{

bool readFloats(size_t n, std::vector<float>& out)
{
    out.resize(n);
    return n == 0 || std::fread(out.data(), sizeof(float), n, stdin) == n;
}

int fail(std::string const& msg)
{
    std::fprintf(stderr, "fftconv_emulate: %s\n", msg.c_str());
    return 1;
}

} // namespace

int main()
{
    std::string line;
    int c = 0;
    while ((c = std::fgetc(stdin)) != EOF && c != '\n')
    {
        line.push_back(static_cast<char>(c));
    }
    std::istringstream in(line);
    std::string op;
    in >> op;
    std::vector<double> y;
    if (op == "rfft2" || op == "irfft2")
    {
        int64_t n = 0, ch = 0, h = 0, w = 0;
        in >> n >> ch >> h >> w;
        Direction const dir = op == "rfft2" ? Direction::kForward : Direction::kInverse;
        SpectralAttributes a;
        a.height = static_cast<int32_t>(h);
        a.width = static_cast<int32_t>(w);
        int64_t const xd[4] = {n, dir == Direction::kForward ? ch : 2 * ch, h, dir == Direction::kForward ? w : a.specCols()};
        Geometry g{};
        Result const r = planSpectralGeometry(dir, a, xd, g);
        if (!r.ok())
        {
            return fail(r.message);
        }
        std::vector<float> x;
        if (!readFloats(static_cast<size_t>(xd[0] * xd[1] * xd[2] * xd[3]), x))
        {
            return fail("short input");
        }
        y = dir == Direction::kForward ? fftconv_ref::emulateRfft2(g, x) : fftconv_ref::emulateIrfft2(g, x);
    }
    else if (op == "fftconv")
    {
        std::string mode;
        int64_t n = 0, ch = 0, h = 0, w = 0;
        in >> mode >> n >> ch >> h >> w;
        Attributes a;
        Result r = parseMode(mode, a.mode);
        for (auto* list : {&a.kernelSize, &a.fftSize})
        {
            int count = 0;
            in >> count;
            for (int i = 0; i < count; ++i)
            {
                int32_t v = 0;
                in >> v;
                list->push_back(v);
            }
        }
        int64_t const xd[4] = {n, ch, h, w};
        Geometry g{};
        if (r.ok())
        {
            r = planGeometry(a, xd, g);
        }
        if (!r.ok())
        {
            return fail(r.message);
        }
        std::vector<int64_t> const kfShape = expectedKfShape(a, ch);
        size_t kfCount = 1;
        for (int64_t v : kfShape)
        {
            kfCount *= static_cast<size_t>(v);
        }
        std::vector<float> x, kf, d;
        if (!readFloats(static_cast<size_t>(n * ch * h * w), x) || !readFloats(kfCount, kf)
            || !readFloats(static_cast<size_t>(ch), d))
        {
            return fail("short input");
        }
        y = fftconv_ref::emulatePipeline(g, x, kf, d);
    }
    else
    {
        return fail("unknown op '" + op + "' (rfft2, irfft2 or fftconv)");
    }
    std::fwrite(y.data(), sizeof(double), y.size(), stdout);
    return 0;
}
