// hyena::RFFT2 / hyena::IRFFT2 CPU core: see spectral_core.h.
#include "spectral_core.h"

#include <cmath>
#include <limits>
#include <string>

namespace hyena
{
namespace fftconv
{
namespace
{

std::string dimsText(std::vector<int64_t> const& d)
{
    std::string s = "(";
    for (size_t i = 0; i < d.size(); ++i)
    {
        s += (i ? ", " : "") + std::to_string(d[i]);
    }
    return s + ")";
}

std::string sizeText(SpectralAttributes const& a)
{
    return "[" + std::to_string(a.height) + ", " + std::to_string(a.width) + "]";
}

} // namespace

char const* directionPluginName(Direction d) noexcept
{
    return d == Direction::kForward ? kRfft2PluginName : kIrfft2PluginName;
}

Result validateSpectralAttributes(SpectralAttributes const& a)
{
    if (a.height < 1 || a.width < 1 || a.height > kMaxFftLength || a.width > kMaxFftLength)
    {
        return Result::error(Status::kInvalidAttribute,
            "spatial_size must be in [1, " + std::to_string(kMaxFftLength) + "], got " + sizeText(a));
    }
    if (static_cast<int64_t>(a.height) * a.width > std::numeric_limits<int32_t>::max())
    {
        return Result::error(Status::kInvalidAttribute, "spatial_size volume exceeds int32 (cuFFT plan limit)");
    }
    return Result::success();
}

Result parseSpectralAttributes(AttrMap const& fields, SpectralAttributes& out)
{
    auto const it = fields.find(kFieldSpatialSize);
    if (it == fields.end())
    {
        return Result::error(Status::kInvalidAttribute, "missing required field(s): spatial_size");
    }
    if (it->second.kind != AttrValue::Kind::kInts || it->second.ints.size() != 2)
    {
        return Result::error(Status::kInvalidAttribute, "field 'spatial_size' must be an int list [H, W]");
    }
    int64_t const h = it->second.ints[0];
    int64_t const w = it->second.ints[1];
    if (h < 1 || w < 1 || h > kMaxFftLength || w > kMaxFftLength)
    {
        return Result::error(Status::kInvalidAttribute,
            "spatial_size must be in [1, " + std::to_string(kMaxFftLength) + "], got [" + std::to_string(h) + ", "
                + std::to_string(w) + "]");
    }
    SpectralAttributes a;
    a.height = static_cast<int32_t>(h);
    a.width = static_cast<int32_t>(w);
    Result const r = validateSpectralAttributes(a);
    if (r.ok())
    {
        out = a;
    }
    return r;
}

Result checkSpectralInput(Direction dir, SpectralAttributes const& a, TensorInfo const& x)
{
    Result r = validateSpectralAttributes(a);
    if (!r.ok())
    {
        return r;
    }
    char const* const op = directionPluginName(dir);
    if (x.type != DType::kFloat32 && x.type != DType::kFloat16)
    {
        return Result::error(Status::kUnsupportedType, std::string(op) + ": X must be float32 or float16");
    }
    if (x.dims.size() != 4)
    {
        return Result::error(Status::kInvalidShape, std::string(op) + ": X must have rank 4, got " + dimsText(x.dims));
    }
    for (int64_t v : x.dims)
    {
        if (v < -1)
        {
            return Result::error(Status::kInvalidShape, std::string(op) + ": X has an invalid dimension " + dimsText(x.dims));
        }
    }
    int64_t const wantW = dir == Direction::kForward ? a.width : a.specCols();
    if ((x.dims[2] != -1 && x.dims[2] != a.height) || (x.dims[3] != -1 && x.dims[3] != wantW))
    {
        return Result::error(Status::kInvalidShape,
            std::string(op) + ": X " + dimsText(x.dims) + " does not match spatial_size " + sizeText(a) + " (expected (N, "
                + (dir == Direction::kForward ? "C" : "2C") + ", " + std::to_string(a.height) + ", "
                + std::to_string(wantW) + "))");
    }
    if (x.dims[1] == 0 || (dir == Direction::kInverse && x.dims[1] != -1 && x.dims[1] % 2 != 0))
    {
        return Result::error(Status::kInvalidShape,
            std::string(op) + ": X needs " + (dir == Direction::kInverse ? "an even, non-zero" : "a non-zero")
                + " channel count (planar real | imaginary halves), got " + dimsText(x.dims));
    }
    return Result::success();
}

Result spectralOutputShape(Direction dir, SpectralAttributes const& a, std::vector<int64_t> const& xDims,
    std::vector<int64_t>& out)
{
    if (xDims.size() != 4)
    {
        return Result::error(Status::kInvalidShape,
            std::string(directionPluginName(dir)) + ": X must have rank 4, got " + dimsText(xDims));
    }
    int64_t const c = xDims[1];
    if (dir == Direction::kForward)
    {
        out = {xDims[0], c == -1 ? -1 : 2 * c, a.height, a.specCols()};
    }
    else
    {
        out = {xDims[0], c == -1 ? -1 : c / 2, a.height, a.width};
    }
    return Result::success();
}

Result planSpectralGeometry(Direction dir, SpectralAttributes const& a, int64_t const xDims[4], Geometry& out)
{
    for (int i = 0; i < 4; ++i)
    {
        if (xDims[i] < (i == 0 ? 0 : 1))
        {
            return Result::error(Status::kInvalidShape,
                std::string(directionPluginName(dir)) + ": X needs concrete dims N>=0, C,H,W>=1, got "
                    + dimsText({xDims[0], xDims[1], xDims[2], xDims[3]}));
        }
    }
    Result r = checkSpectralInput(dir, a, TensorInfo{{xDims[0], xDims[1], xDims[2], xDims[3]}, DType::kFloat32});
    if (!r.ok())
    {
        return r;
    }
    int64_t const channels = dir == Direction::kForward ? xDims[1] : xDims[1] / 2;
    if (xDims[0] * channels > std::numeric_limits<int32_t>::max())
    {
        return Result::error(Status::kInvalidShape, "N*C exceeds int32 (cuFFT batch limit)");
    }
    Geometry g{};
    g.rank = 2;
    g.batch = xDims[0];
    g.channels = channels;
    g.rows = a.height;
    g.cols = a.width;
    g.fftRows = a.height;
    g.fftCols = a.width;
    g.specCols = a.specCols();
    g.cropRow = 0;
    g.cropCol = 0;
    g.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(a.height) * static_cast<double>(a.width)));
    out = g;
    return Result::success();
}

} // namespace fftconv
} // namespace hyena
