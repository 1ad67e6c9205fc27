// hyena::RFFT2 / hyena::IRFFT2 TensorRT glue: see spectral_plugin.h.
#include "spectral_plugin.h"

#include <algorithm>
#include <string>

using nvinfer1::DataType;
using nvinfer1::ErrorCode;
using nvinfer1::ILogger;
using nvinfer1::PluginField;
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

std::vector<int64_t> knownDims(nvinfer1::DimsExprs const& e)
{
    std::vector<int64_t> v;
    for (int32_t i = 0; i < e.nbDims; ++i)
    {
        v.push_back(e.d[i] != nullptr && e.d[i]->isConstant() ? e.d[i]->getConstantValue() : -1);
    }
    return v;
}

} // namespace

// ---- SpectralPlugin -----------------------------------------------------------------------------
SpectralPlugin::SpectralPlugin(Direction dir, SpectralAttributes attrs, std::string layerName)
    : mDir(dir)
    , mAttrs(attrs)
    , mLayerName(std::move(layerName))
{
}

SpectralPlugin::~SpectralPlugin() noexcept
{
    destroyPlans(mPlans);
}

void SpectralPlugin::report(ErrorCode code, std::string const& msg) const noexcept
{
    try
    {
        reportTo(mRecorder, code,
            std::string(directionPluginName(mDir)) + (mLayerName.empty() ? ": " : " layer '" + mLayerName + "': ")
                + msg);
    }
    catch (...)
    {
    }
}

int32_t SpectralPlugin::fail(Result const& r) const noexcept
{
    report(toErrorCode(r.status), r.message);
    return -1;
}

nvinfer1::IPluginCapability* SpectralPlugin::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

SpectralPlugin::RuntimeState SpectralPlugin::runtimeState() const noexcept
{
    return mState;
}

KernelResult SpectralPlugin::adoptRuntimeState(RuntimeState const& state) noexcept
{
    mState = state;
    mState.valid = false;
    if (!state.valid)
    {
        return KernelResult{};
    }
    KernelResult const k = ensurePlans(mState.geom, mPlans, nullptr, planDirections(mDir));
    mState.valid = k.ok();
    return k;
}

nvinfer1::IPluginV3* SpectralPlugin::clone() noexcept
{
    return guarded(mRecorder, "clone", static_cast<nvinfer1::IPluginV3*>(nullptr), [&]() -> nvinfer1::IPluginV3* {
        auto* p = new SpectralPlugin(mDir, mAttrs, mLayerName);
        p->mRecorder = mRecorder;
        // The configured state and the work table travel with the clone; cuFFT handles are
        // per instance, so a configured clone makes its own plans now (outside enqueue).
        p->mWorkTable = mWorkTable;
        KernelResult const k = p->adoptRuntimeState(mState);
        if (!k.ok())
        {
            report(ErrorCode::kFAILED_INITIALIZATION,
                "clone: cuFFT plan creation failed (" + kernelMessage(k) + "); the clone needs onShapeChange");
        }
        return p;
    });
}

char const* SpectralPlugin::getPluginName() const noexcept
{
    return directionPluginName(mDir);
}

char const* SpectralPlugin::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* SpectralPlugin::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
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
        std::string warning;
        size_t const bytes = sizeWorkspace(g, planDirections(mDir), mWorkTable, warning);
        if (!warning.empty())
        {
            report(ErrorCode::kINTERNAL_ERROR, "getWorkspaceSize: " + warning);
        }
        return bytes;
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
        // Plans here, never in enqueue, and only for batch levels not seen before.
        KernelResult const k = ensurePlans(g, mPlans, nullptr, planDirections(mDir));
        if (!k.ok())
        {
            report(ErrorCode::kFAILED_INITIALIZATION, "cuFFT plan creation failed: " + kernelMessage(k));
            return -1;
        }
        WorkspaceGrant const grant = grantWorkspace(g, mPlans, mWorkTable, planDirections(mDir));
        if (!grant.ok())
        {
            report(grant.code, grant.message);
            return -1;
        }
        mState.geom = g;
        std::copy(x.dims.begin(), x.dims.end(), mState.xDims);
        mState.io = in[0].type == DataType::kHALF ? IoType::kFloat16 : IoType::kFloat32;
        mState.grantedBytes = grant.bytes;
        mState.valid = true;
        return 0;
    });
}

int32_t SpectralPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* /*outputDesc*/, void const* const* inputs, void* const* outputs, void* workspace,
    cudaStream_t stream) noexcept
{
    return guarded(mRecorder, "enqueue", int32_t{-1}, [&]() -> int32_t {
        if (!mState.valid)
        {
            report(ErrorCode::kINVALID_STATE, "enqueue before a successful onShapeChange");
            return -1;
        }
        if (inputDesc == nullptr || inputs == nullptr || outputs == nullptr)
        {
            report(ErrorCode::kINVALID_ARGUMENT, "enqueue: null descriptors or buffers");
            return -1;
        }
        nvinfer1::Dims const& xd = inputDesc[0].dims;
        if (xd.nbDims != 4 || !std::equal(mState.xDims, mState.xDims + 4, xd.d))
        {
            report(ErrorCode::kINVALID_STATE, "enqueue: X shape differs from the last onShapeChange");
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
        KernelResult const k = runSpectral(a, mPlans, stream);
        if (!k.ok())
        {
            report(ErrorCode::kFAILED_EXECUTION, "enqueue failed: " + kernelMessage(k));
            return -1;
        }
        return 0;
    });
}

nvinfer1::IPluginV3* SpectralPlugin::attachToContext(nvinfer1::IPluginResourceContext* context) noexcept
{
    return guarded(mRecorder, "attachToContext", static_cast<nvinfer1::IPluginV3*>(nullptr),
        [&]() -> nvinfer1::IPluginV3* {
            auto* p = static_cast<SpectralPlugin*>(clone());
            if (p != nullptr && context != nullptr)
            {
                p->mRecorder = context->getErrorRecorder();
            }
            return p;
        });
}

PluginFieldCollection const* SpectralPlugin::getFieldsToSerialize() noexcept
{
    return guarded(mRecorder, "getFieldsToSerialize", static_cast<PluginFieldCollection const*>(nullptr),
        [&]() -> PluginFieldCollection const* {
            mSpatialOut = {mAttrs.height, mAttrs.width};
            mFields.clear();
            mFields.emplace_back(kFieldSpatialSize, mSpatialOut.data(), PluginFieldType::kINT32, 2);
            mWorkTableOut = mWorkTable;
            if (!mWorkTableOut.empty())
            {
                mFields.emplace_back(kFieldWorkTable, mWorkTableOut.data(), PluginFieldType::kINT64,
                    static_cast<int32_t>(mWorkTableOut.size()));
            }
            mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
            mFieldCollection.fields = mFields.data();
            return &mFieldCollection;
        });
}

// ---- SpectralPluginCreator ------------------------------------------------------------------------
SpectralPluginCreator::SpectralPluginCreator(Direction dir)
    : mDir(dir)
{
    // The one field the ONNX parser reads from the node (plugin_namespace/plugin_version are
    // the parser's own).
    mFieldNames.emplace_back(kFieldSpatialSize, nullptr, PluginFieldType::kINT32, 2);
    mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
    mFieldCollection.fields = mFieldNames.data();
}

char const* SpectralPluginCreator::getPluginName() const noexcept
{
    return directionPluginName(mDir);
}

char const* SpectralPluginCreator::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* SpectralPluginCreator::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

PluginFieldCollection const* SpectralPluginCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
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
        auto const wt = fields.find(kFieldWorkTable);
        if (r.ok() && wt != fields.end())
        {
            table = wt->second.ints;
            r = wt->second.kind == AttrValue::Kind::kInts
                ? validateWorkTable(table)
                : Result::error(Status::kCorruptBuffer, std::string("field '") + kFieldWorkTable + "' must be ints");
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
