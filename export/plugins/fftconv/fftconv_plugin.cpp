// hyena::FFTConv TensorRT glue: see fftconv_plugin.h.
#include "fftconv_plugin.h"
#include "spectral_plugin.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

using nvinfer1::DataType;
using nvinfer1::ErrorCode;
using nvinfer1::ILogger;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginFieldType;
using nvinfer1::TensorFormat;

namespace hyena
{
namespace fftconv
{

// ---- FFTConvPlugin ---------------------------------------------------------------------------------
FFTConvPlugin::FFTConvPlugin(Attributes attrs, std::string layerName)
    : PluginBase(std::move(layerName), kPlanBoth)
    , mAttrs(std::move(attrs))
{
}

PluginBase* FFTConvPlugin::newUnconfigured() const
{
    return new FFTConvPlugin(mAttrs, mLayerName);
}

char const* FFTConvPlugin::getPluginName() const noexcept
{
    return kPluginName;
}

int32_t FFTConvPlugin::getNbOutputs() const noexcept
{
    return kNbOutputs;
}

int32_t FFTConvPlugin::configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    return guarded(mRecorder, "configurePlugin", int32_t{-1}, [&]() -> int32_t {
        if (in == nullptr || out == nullptr || nbInputs != kNbInputs || nbOutputs != kNbOutputs)
        {
            return fail(Result::error(Status::kInvalidShape, "expects 3 inputs (X, Kf, D) and 1 output"));
        }
        // Shapes with -1 for dynamic dims, then the largest shapes of the profile.
        TensorInfo const kf = toInfo(in[kInputKf].desc.dims, in[kInputKf].desc.type);
        TensorInfo const d = toInfo(in[kInputD].desc.dims, in[kInputD].desc.type);
        Result r = checkInputs(mAttrs, toInfo(in[kInputX].desc.dims, in[kInputX].desc.type), kf, d);
        if (r.ok())
        {
            r = checkInputs(mAttrs, toInfo(in[kInputX].max, in[kInputX].desc.type), kf, d);
        }
        if (r.ok() && out[0].desc.type != in[kInputX].desc.type)
        {
            r = Result::error(Status::kUnsupportedType, "Y must have X's dtype");
        }
        return r.ok() ? 0 : fail(r);
    });
}

int32_t FFTConvPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    return guarded(mRecorder, "getOutputDataTypes", int32_t{-1}, [&]() -> int32_t {
        if (outputTypes == nullptr || inputTypes == nullptr || nbOutputs != kNbOutputs || nbInputs != kNbInputs)
        {
            return fail(Result::error(Status::kInvalidShape, "expects 3 inputs (X, Kf, D) and 1 output"));
        }
        DataType const xt = inputTypes[kInputX];
        if (xt != DataType::kFLOAT && xt != DataType::kHALF)
        {
            return fail(Result::error(Status::kUnsupportedType, "X must be float32 or float16"));
        }
        outputTypes[0] = xt;
        return 0;
    });
}

int32_t FFTConvPlugin::getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
    nvinfer1::DimsExprs const* /*shapeInputs*/, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs,
    int32_t nbOutputs, nvinfer1::IExprBuilder& /*exprBuilder*/) noexcept
{
    return guarded(mRecorder, "getOutputShapes", int32_t{-1}, [&]() -> int32_t {
        if (inputs == nullptr || outputs == nullptr || nbInputs != kNbInputs || nbOutputs != kNbOutputs
            || nbShapeInputs != 0)
        {
            return fail(Result::error(Status::kInvalidShape, "expects 3 inputs (X, Kf, D), no shape inputs, 1 output"));
        }
        // Validate whatever is already known at network-definition time (-1 = not yet).
        std::vector<int64_t> yDims;
        Result r = outputShape(knownDims(inputs[kInputX]), yDims);
        if (r.ok())
        {
            r = checkInputs(mAttrs, TensorInfo{knownDims(inputs[kInputX]), DType::kFloat32},
                TensorInfo{knownDims(inputs[kInputKf]), DType::kFloat32},
                TensorInfo{knownDims(inputs[kInputD]), DType::kFloat32});
        }
        if (!r.ok())
        {
            return fail(r);
        }
        outputs[0] = inputs[kInputX]; // Y has X's shape
        return 0;
    });
}

bool FFTConvPlugin::supportsFormatCombination(
    int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || nbInputs != kNbInputs || nbOutputs != kNbOutputs || pos < 0
        || pos >= nbInputs + nbOutputs)
    {
        return false;
    }
    nvinfer1::PluginTensorDesc const& d = inOut[pos].desc;
    if (d.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    switch (pos)
    {
    case kInputX: return d.type == DataType::kFLOAT || d.type == DataType::kHALF;
    case kInputKf:
    case kInputD: return d.type == DataType::kFLOAT;
    default: return d.type == inOut[kInputX].desc.type; // Y
    }
}

size_t FFTConvPlugin::getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    nvinfer1::DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    return guarded(mRecorder, "getWorkspaceSize", size_t{0}, [&]() -> size_t {
        if (inputs == nullptr || nbInputs != kNbInputs || inputs[kInputX].max.nbDims != 4)
        {
            report(ErrorCode::kINVALID_ARGUMENT, "getWorkspaceSize: expects X of rank 4");
            return 0;
        }
        int64_t const xMax[4] = {inputs[kInputX].max.d[0], inputs[kInputX].max.d[1], inputs[kInputX].max.d[2],
            inputs[kInputX].max.d[3]};
        Geometry g{};
        Result const r = planGeometry(mAttrs, xMax, g);
        if (!r.ok())
        {
            fail(r);
            return 0;
        }
        return requestWorkspace(g);
    });
}

int32_t FFTConvPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    return guarded(mRecorder, "onShapeChange", int32_t{-1}, [&]() -> int32_t {
        mState.valid = false;
        if (in == nullptr || out == nullptr || nbInputs != kNbInputs || nbOutputs != kNbOutputs)
        {
            return fail(Result::error(Status::kInvalidShape, "expects 3 inputs (X, Kf, D) and 1 output"));
        }
        TensorInfo const x = toInfo(in[kInputX].dims, in[kInputX].type);
        Result r = checkInputs(mAttrs, x, toInfo(in[kInputKf].dims, in[kInputKf].type),
            toInfo(in[kInputD].dims, in[kInputD].type));
        if (!r.ok())
        {
            return fail(r);
        }
        if (out[0].type != in[kInputX].type || toVector(out[0].dims) != x.dims)
        {
            return fail(Result::error(Status::kInvalidShape, "Y must have X's shape and dtype"));
        }
        Geometry g{};
        r = planGeometry(mAttrs, x.dims.data(), g);
        if (!r.ok())
        {
            return fail(r);
        }
        return configureRuntime(g, x.dims, in[kInputX].type);
    });
}

int32_t FFTConvPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* /*outputDesc*/, void const* const* inputs, void* const* outputs, void* workspace,
    cudaStream_t stream) noexcept
{
    return guarded(mRecorder, "enqueue", int32_t{-1}, [&]() -> int32_t {
        if (!readyToEnqueue(inputDesc, kInputX, inputs, outputs))
        {
            return -1;
        }
        LaunchArgs a;
        a.geom = mState.geom;
        a.io = mState.io;
        a.x = inputs[kInputX];
        a.kf = static_cast<float const*>(inputs[kInputKf]);
        a.d = static_cast<float const*>(inputs[kInputD]);
        a.y = outputs[0];
        a.workspace = workspace;
        // What TensorRT provides (at least what getWorkspaceSize asked for this shape); run()
        // compares it with the layout its plans need and refuses rather than overrun it.
        a.workspaceBytes = mState.grantedBytes;
        return launched(run(a, mPlans, stream));
    });
}

PluginFieldCollection const* FFTConvPlugin::getFieldsToSerialize() noexcept
{
    return guarded(mRecorder, "getFieldsToSerialize", static_cast<PluginFieldCollection const*>(nullptr),
        [&]() -> PluginFieldCollection const* {
            mModeStr = modeName(mAttrs.mode);
            mStateBlob = serializeAttributes(mAttrs);
            mFields.clear();
            // Plain contract fields (readable by tools), then the versioned, checksummed
            // state that createPlugin(kRUNTIME) prefers.
            mFields.emplace_back(kFieldMode, mModeStr.c_str(), PluginFieldType::kCHAR,
                static_cast<int32_t>(mModeStr.size() + 1));
            mFields.emplace_back(kFieldKernelSize, mAttrs.kernelSize.data(), PluginFieldType::kINT32,
                static_cast<int32_t>(mAttrs.kernelSize.size()));
            mFields.emplace_back(kFieldFftSize, mAttrs.fftSize.data(), PluginFieldType::kINT32,
                static_cast<int32_t>(mAttrs.fftSize.size()));
            mFields.emplace_back(
                kFieldState, mStateBlob.data(), PluginFieldType::kINT8, static_cast<int32_t>(mStateBlob.size()));
            return finishFields();
        });
}

// ---- FFTConvPluginCreator ----------------------------------------------------------------------------
FFTConvPluginCreator::FFTConvPluginCreator()
{
    // The fields the ONNX parser looks up on the node. The state blob is only written by
    // getFieldsToSerialize.
    addFieldName(kFieldMode, PluginFieldType::kCHAR, 0);
    addFieldName(kFieldKernelSize, PluginFieldType::kINT32, 0);
    addFieldName(kFieldFftSize, PluginFieldType::kINT32, 0);
    // Checked against fft_size in 2d_circular; ignored by the linear modes.
    addFieldName(kFieldSpatialSize, PluginFieldType::kINT32, 0);
}

char const* FFTConvPluginCreator::getPluginName() const noexcept
{
    return kPluginName;
}

nvinfer1::IPluginV3* FFTConvPluginCreator::createPlugin(
    char const* name, PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept
{
    return guarded(nullptr, "createPlugin", static_cast<nvinfer1::IPluginV3*>(nullptr), [&]() -> nvinfer1::IPluginV3* {
        std::string const layer = name != nullptr ? name : "";
        AttrMap fields;
        Result r = fieldsToAttrMap(fc, fields);
        if (r.ok() && phase == nvinfer1::TensorRTPhase::kRUNTIME && fields.count(kFieldState) == 0)
        {
            logMessage(ILogger::Severity::kWARNING,
                "layer '" + layer + "': engine has no serialized state field; using the plain fields");
        }
        Attributes attrs;
        if (r.ok())
        {
            r = parseAttributes(fields, attrs);
        }
        if (!r.ok())
        {
            reportTo(nullptr, toErrorCode(r.status), "createPlugin('" + layer + "'): " + r.message);
            return nullptr;
        }
        std::vector<int64_t> table;
        r = readWorkTable(fields, table);
        if (!r.ok())
        {
            reportTo(nullptr, toErrorCode(r.status), "createPlugin('" + layer + "'): " + r.message);
            return nullptr;
        }
        auto* p = new FFTConvPlugin(std::move(attrs), layer);
        p->setWorkTable(std::move(table));
        return p;
    });
}

} // namespace fftconv
} // namespace hyena

// ---- registration ------------------------------------------------------------------------------------------
//
// The library holds three creators (hyena::FFTConv, hyena::RFFT2, hyena::IRFFT2, version 1).
// Two ways in, one object per creator:
//  1. dlopen (Triton's TensorRT backend, LD_PRELOAD, ctypes.CDLL): the static registrar
//     below registers every creator with the global registry under namespace "hyena".
//  2. IPluginRegistry::loadLibrary (trtexec --dynamicPlugins, setPluginsToSerialize):
//     TensorRT dlopens the library -- which runs (1) first -- then calls getCreators() and
//     registers every creator returned; per NvInferRuntimeCommon.h, loadLibrary "will fail
//     and return nullptr if any of the plugins are already registered". So getCreators()
//     deregisters the creators that (1) registered and hands them over: afterwards exactly
//     one registration of each exists, owned by loadLibrary (deregisterLibrary removes them).
//     getCreators() is meant for loadLibrary only: a caller that merely lists creators
//     must register them itself.
//  HYENA_FFTCONV_NO_STATIC_REGISTRATION=1 skips (1), for hosts that only use loadLibrary.
//  On unload (dlclose or exit) the registrar deregisters what it registered, so the
//  registry never keeps a pointer into an unloaded library.
namespace
{

constexpr int32_t kNbCreators = 3;

nvinfer1::IPluginCreatorInterface* const* creatorList()
{
    static hyena::fftconv::FFTConvPluginCreator fftconv;
    static hyena::fftconv::SpectralPluginCreator rfft2(hyena::fftconv::Direction::kForward);
    static hyena::fftconv::SpectralPluginCreator irfft2(hyena::fftconv::Direction::kInverse);
    static nvinfer1::IPluginCreatorInterface* const kCreators[kNbCreators] = {&fftconv, &rfft2, &irfft2};
    return kCreators;
}

char const* creatorName(nvinfer1::IPluginCreatorInterface* c) noexcept
{
    return static_cast<nvinfer1::IPluginCreatorV3One*>(c)->getPluginName();
}

//! Which creators the static registrar registered (and so must deregister).
std::atomic<bool> gStaticallyRegistered[kNbCreators]{};

bool staticRegistrationDisabled() noexcept
{
    char const* v = std::getenv("HYENA_FFTCONV_NO_STATIC_REGISTRATION");
    return v != nullptr && v[0] != '\0' && std::strcmp(v, "0") != 0;
}

void deregisterStatic() noexcept
{
    nvinfer1::IPluginRegistry* registry = nullptr;
    for (int32_t i = 0; i < kNbCreators; ++i)
    {
        if (gStaticallyRegistered[i].exchange(false))
        {
            registry = registry != nullptr ? registry : getPluginRegistry();
            if (registry != nullptr)
            {
                registry->deregisterCreator(*creatorList()[i]);
            }
        }
    }
}

struct StaticRegistrar
{
    StaticRegistrar() noexcept
    {
        try
        {
            if (staticRegistrationDisabled())
            {
                return;
            }
            nvinfer1::IPluginRegistry* registry = getPluginRegistry();
            if (registry == nullptr)
            {
                hyena::fftconv::logMessage(nvinfer1::ILogger::Severity::kERROR, "no TensorRT plugin registry");
                return;
            }
            for (int32_t i = 0; i < kNbCreators; ++i)
            {
                nvinfer1::IPluginCreatorInterface* c = creatorList()[i];
                std::string const id = std::string("hyena::") + creatorName(c) + " version 1";
                if (registry->registerCreator(*c, hyena::fftconv::kPluginNamespace))
                {
                    gStaticallyRegistered[i].store(true);
                    hyena::fftconv::logMessage(nvinfer1::ILogger::Severity::kVERBOSE, "registered creator " + id);
                }
                else
                {
                    hyena::fftconv::logMessage(nvinfer1::ILogger::Severity::kWARNING,
                        "could not register creator " + id + " (already registered?)");
                }
            }
        }
        catch (...)
        {
        }
    }

    ~StaticRegistrar()
    {
        deregisterStatic();
    }
};

StaticRegistrar gStaticRegistrar;

} // namespace

extern "C" nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    try
    {
        deregisterStatic();
        nbCreators = kNbCreators;
        return creatorList();
    }
    catch (...)
    {
        nbCreators = 0;
        return nullptr;
    }
}

extern "C" void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    hyena::fftconv::setLoggerFinderInstance(finder);
}

extern "C" int64_t hyena_fftconv_cufft_plans_created()
{
    return hyena::fftconv::cufftPlansCreated();
}
