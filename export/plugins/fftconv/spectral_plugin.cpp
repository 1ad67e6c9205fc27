// hyena::RFFT2 / hyena::IRFFT2 TensorRT glue: see spectral_plugin.h.
#include "spectral_plugin.h"

#include <algorithm>
#include <string>

using nvinfer1::DataType;
using nvinfer1::ErrorCode;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginFieldType;
using nvinfer1::TensorFormat;

namespace hyena
{
namespace fftconv
{
namespace
{

constexpr int32_t kNbSpectralInputs = 1;  // X
constexpr int32_t kNbSpectralOutputs = 1; // Y

} // namespace

// ---- SpectralPlugin -----------------------------------------------------------------------------
SpectralPlugin::SpectralPlugin(Direction dir, SpectralAttributes attrs, std::string layerName)
    : PluginBase(std::move(layerName), planDirections(dir))
    , mDir(dir)
    , mAttrs(attrs)
{
}

PluginBase* SpectralPlugin::newUnconfigured() const
{
    return new SpectralPlugin(mDir, mAttrs, mLayerName);
}

char const* SpectralPlugin::getPluginName() const noexcept
{
    return directionPluginName(mDir);
}

int32_t SpectralPlugin::getNbOutputs() const noexcept
{
    return kNbSpectralOutputs;
}

int32_t SpectralPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    return guarded(mRecorder, "configurePlugin", int32_t{-1}, [&]() -> int32_t {
        if (in == nullptr || out == nullptr || nbInputs != kNbSpectralInputs || nbOutputs != kNbSpectralOutputs)
        {
            return fail(Result::error(Status::kInvalidShape, "expects 1 input (X) and 1 output"));
        }
        // Shapes with -1 for dynamic dims, then the largest shapes of the profile.
        Result r = checkSpectralInput(mDir, mAttrs, toInfo(in[0].desc.dims, in[0].desc.type));
        if (r.ok())
        {
            r = checkSpectralInput(mDir, mAttrs, toInfo(in[0].max, in[0].desc.type));
        }
        if (r.ok() && out[0].desc.type != in[0].desc.type)
        {
            r = Result::error(Status::kUnsupportedType, "Y must have X's dtype");
        }
        return r.ok() ? 0 : fail(r);
    });
}

int32_t SpectralPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    return guarded(mRecorder, "getOutputDataTypes", int32_t{-1}, [&]() -> int32_t {
        if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != kNbSpectralOutputs
            || nbInputs != kNbSpectralInputs)
        {
            return fail(Result::error(Status::kInvalidShape, "expects 1 input (X) and 1 output"));
        }
        if (inputTypes[0] != DataType::kFLOAT && inputTypes[0] != DataType::kHALF)
        {
            return fail(Result::error(Status::kUnsupportedType, "X must be float32 or float16"));
        }
        outputTypes[0] = inputTypes[0];
        return 0;
    });
}

int32_t SpectralPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept
{
    return guarded(mRecorder, "getOutputShapes", int32_t{-1}, [&]() -> int32_t {
        if (inputs == nullptr || outputs == nullptr || nbInputs != kNbSpectralInputs
            || nbOutputs != kNbSpectralOutputs || nbShapeInputs != 0)
        {
            return fail(Result::error(Status::kInvalidShape, "expects 1 input (X), no shape inputs, 1 output"));
        }
        // Validate what is known at network-definition time; the shape rule itself is
        // spectralOutputShape (tested in the core), expressed here for symbolic dims.
        std::vector<int64_t> const x = knownDims(inputs[0]);
        Result r = checkSpectralInput(mDir, mAttrs, TensorInfo{x, DType::kFloat32});
        if (!r.ok())
        {
            return fail(r);
        }
        nvinfer1::DimsExprs const& in = inputs[0];
        nvinfer1::IDimensionExpr const* two = exprBuilder.constant(2);
        nvinfer1::DimsExprs& y = outputs[0];
        y.nbDims = 4;
        y.d[0] = in.d[0];
        y.d[2] = exprBuilder.constant(mAttrs.height);
        if (mDir == Direction::kForward)
        {
            y.d[1] = exprBuilder.operation(nvinfer1::DimensionOperation::kPROD, *in.d[1], *two);
            y.d[3] = exprBuilder.constant(mAttrs.specCols());
        }
        else
        {
            y.d[1] = exprBuilder.operation(nvinfer1::DimensionOperation::kFLOOR_DIV, *in.d[1], *two);
            y.d[3] = exprBuilder.constant(mAttrs.width);
        }
        return y.d[1] != nullptr && y.d[2] != nullptr && y.d[3] != nullptr
            ? 0
            : fail(Result::error(Status::kInternal, "the expression builder returned no dimension"));
    });
}

bool SpectralPlugin::supportsFormatCombination(
    int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || nbInputs != kNbSpectralInputs || nbOutputs != kNbSpectralOutputs || pos < 0
        || pos >= nbInputs + nbOutputs)
    {
        return false;
    }
    nvinfer1::PluginTensorDesc const& d = inOut[pos].desc;
    if (d.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    return pos == 0 ? (d.type == DataType::kFLOAT || d.type == DataType::kHALF) : d.type == inOut[0].desc.type;
}

size_t SpectralPlugin::getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    return guarded(mRecorder, "getWorkspaceSize", size_t{0}, [&]() -> size_t {
        if (inputs == nullptr || nbInputs != kNbSpectralInputs || inputs[0].max.nbDims != 4)
        {
            report(ErrorCode::kINVALID_ARGUMENT, "getWorkspaceSize: expects X of rank 4");
            return 0;
        }
        int64_t const xMax[4] = {inputs[0].max.d[0], inputs[0].max.d[1], inputs[0].max.d[2], inputs[0].max.d[3]};
        Geometry g{};
        Result const r = planSpectralGeometry(mDir, mAttrs, xMax, g);
        if (!r.ok())
        {
            fail(r);
            return 0;
        }
        return requestWorkspace(g);
    });
}

int32_t SpectralPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    return guarded(mRecorder, "onShapeChange", int32_t{-1}, [&]() -> int32_t {
        mState.valid = false;
        if (in == nullptr || out == nullptr || nbInputs != kNbSpectralInputs || nbOutputs != kNbSpectralOutputs)
        {
            return fail(Result::error(Status::kInvalidShape, "expects 1 input (X) and 1 output"));
        }
        TensorInfo const x = toInfo(in[0].dims, in[0].type);
        Result r = checkSpectralInput(mDir, mAttrs, x);
        std::vector<int64_t> yDims;
        if (r.ok())
        {
            r = spectralOutputShape(mDir, mAttrs, x.dims, yDims);
        }
        if (!r.ok())
        {
            return fail(r);
        }
        if (out[0].type != in[0].type || toVector(out[0].dims) != yDims)
        {
            return fail(Result::error(Status::kInvalidShape, "Y has the wrong shape or dtype for this X"));
        }
        Geometry g{};
        r = planSpectralGeometry(mDir, mAttrs, x.dims.data(), g);
        if (!r.ok())
        {
            return fail(r);
        }
        return configureRuntime(g, x.dims, in[0].type);
    });
}

int32_t SpectralPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* /*outputDesc*/, void const* const* inputs, void* const* outputs, void* workspace,
    cudaStream_t stream) noexcept
{
    return guarded(mRecorder, "enqueue", int32_t{-1}, [&]() -> int32_t {
        if (!readyToEnqueue(inputDesc, 0, inputs, outputs))
        {
            return -1;
        }
        SpectralLaunchArgs a;
        a.dir = mDir;
        a.geom = mState.geom;
        a.io = mState.io;
        a.x = inputs[0];
        a.y = outputs[0];
        a.workspace = workspace;
        a.workspaceBytes = mState.grantedBytes;
        return launched(runSpectral(a, mPlans, stream));
    });
}

PluginFieldCollection const* SpectralPlugin::getFieldsToSerialize() noexcept
{
    return guarded(mRecorder, "getFieldsToSerialize", static_cast<PluginFieldCollection const*>(nullptr),
        [&]() -> PluginFieldCollection const* {
            mSpatialOut = {mAttrs.height, mAttrs.width};
            mFields.clear();
            mFields.emplace_back(kFieldSpatialSize, mSpatialOut.data(), PluginFieldType::kINT32, 2);
            return finishFields();
        });
}

// ---- SpectralPluginCreator ------------------------------------------------------------------------
SpectralPluginCreator::SpectralPluginCreator(Direction dir)
    : mDir(dir)
{
    // The one field the ONNX parser reads from the node.
    addFieldName(kFieldSpatialSize, PluginFieldType::kINT32, 2);
}

char const* SpectralPluginCreator::getPluginName() const noexcept
{
    return directionPluginName(mDir);
}

nvinfer1::IPluginV3* SpectralPluginCreator::createPlugin(
    char const* name, PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept
{
    return guarded(nullptr, "createPlugin", static_cast<nvinfer1::IPluginV3*>(nullptr), [&]() -> nvinfer1::IPluginV3* {
        std::string const layer = name != nullptr ? name : "";
        std::string const where = std::string(directionPluginName(mDir)) + " createPlugin('" + layer + "'): ";
        AttrMap fields;
        Result r = fieldsToAttrMap(fc, fields);
        SpectralAttributes attrs;
        if (r.ok())
        {
            r = parseSpectralAttributes(fields, attrs);
        }
        std::vector<int64_t> table;
        if (r.ok())
        {
            r = readWorkTable(fields, table);
        }
        if (!r.ok())
        {
            reportTo(nullptr, toErrorCode(r.status), where + r.message);
            return nullptr;
        }
        auto* p = new SpectralPlugin(mDir, attrs, layer);
        p->setWorkTable(std::move(table));
        return p;
    });
}

} // namespace fftconv
} // namespace hyena
