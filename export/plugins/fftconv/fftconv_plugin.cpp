// hyena::FFTConv TensorRT glue: see fftconv_plugin.h.
#include "fftconv_plugin.h"
#include "spectral_plugin.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <new>
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

// ---- FFTConvPlugin ---------------------------------------------------------------------------------
FFTConvPlugin::FFTConvPlugin(Attributes attrs, std::string layerName)
    : mAttrs(std::move(attrs))
    , mLayerName(std::move(layerName))
{
}

FFTConvPlugin::~FFTConvPlugin() noexcept
{
    destroyPlans(mPlans);
}

void FFTConvPlugin::report(ErrorCode code, std::string const& msg) const noexcept
{
    try
    {
        reportTo(mRecorder, code,
            std::string(kPluginName) + (mLayerName.empty() ? ": " : " layer '" + mLayerName + "': ") + msg);
    }
    catch (...)
    {
    }
}

int32_t FFTConvPlugin::fail(Result const& r) const noexcept
{
    report(toErrorCode(r.status), r.message);
    return -1;
}

nvinfer1::IPluginCapability* FFTConvPlugin::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

FFTConvPlugin::RuntimeState FFTConvPlugin::runtimeState() const noexcept
{
    RuntimeState s;
    s.geom = mGeom;
    std::copy(mXDims, mXDims + 4, s.xDims);
    s.io = mIo;
    s.grantedBytes = mGrantedBytes;
    s.valid = mGeomValid;
    return s;
}

KernelResult FFTConvPlugin::adoptRuntimeState(RuntimeState const& state) noexcept
{
    mGeom = state.geom;
    std::copy(state.xDims, state.xDims + 4, mXDims);
    mIo = state.io;
    mGrantedBytes = state.grantedBytes;
    mGeomValid = false;
    if (!state.valid)
    {
        return KernelResult{};
    }
    KernelResult const k = ensurePlans(mGeom, mPlans);
    mGeomValid = k.ok();
    return k;
}

nvinfer1::IPluginV3* FFTConvPlugin::clone() noexcept
{
    return guarded(mRecorder, "clone", static_cast<nvinfer1::IPluginV3*>(nullptr), [&]() -> nvinfer1::IPluginV3* {
        auto* p = new FFTConvPlugin(mAttrs, mLayerName);
        p->mRecorder = mRecorder;
        // The configured state travels with the clone (geometry, X dims, I/O type, workspace
        // grant, validity) and so does the work table. cuFFT handles are per instance: a
        // configured clone makes its own plans now (outside enqueue); if that fails it stays
        // unconfigured and enqueue refuses until the next onShapeChange.
        p->mWorkTable = mWorkTable;
        KernelResult const k = p->adoptRuntimeState(runtimeState());
        if (!k.ok())
        {
            report(ErrorCode::kFAILED_INITIALIZATION,
                "clone: cuFFT plan creation failed (" + kernelMessage(k) + "); the clone needs onShapeChange");
        }
        return p;
    });
}

char const* FFTConvPlugin::getPluginName() const noexcept
{
    return kPluginName;
}

char const* FFTConvPlugin::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* FFTConvPlugin::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
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
        auto known = [](nvinfer1::DimsExprs const& e) {
            std::vector<int64_t> v;
            for (int32_t i = 0; i < e.nbDims; ++i)
            {
                v.push_back(e.d[i] != nullptr && e.d[i]->isConstant() ? e.d[i]->getConstantValue() : -1);
            }
            return v;
        };
        std::vector<int64_t> yDims;
        Result r = outputShape(known(inputs[kInputX]), yDims);
        if (r.ok())
        {
            r = checkInputs(mAttrs, TensorInfo{known(inputs[kInputX]), DType::kFloat32},
                TensorInfo{known(inputs[kInputKf]), DType::kFloat32}, TensorInfo{known(inputs[kInputD]), DType::kFloat32});
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
        // Buffers for the largest batch + the cuFFT work area of every batch level up to it
        // (no plan made). What was asked for is remembered per level and serialised, so that
        // the runtime can check what it may use.
        std::string warning;
        size_t const bytes = sizeWorkspace(g, kPlanBoth, mWorkTable, warning);
        if (!warning.empty())
        {
            report(ErrorCode::kINTERNAL_ERROR, "getWorkspaceSize: " + warning);
        }
        return bytes;
    });
}

int32_t FFTConvPlugin::onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
    nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    return guarded(mRecorder, "onShapeChange", int32_t{-1}, [&]() -> int32_t {
        mGeomValid = false;
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
        // cuFFT plans are made here, never in enqueue, and only for batch levels not seen
        // before (see ensurePlans): batch-size changes within what was seen make no plan.
        KernelResult k = ensurePlans(g, mPlans);
        if (!k.ok())
        {
            report(ErrorCode::kFAILED_INITIALIZATION, "cuFFT plan creation failed: " + kernelMessage(k));
            return -1;
        }
        WorkspaceGrant const grant = grantWorkspace(g, mPlans, mWorkTable, kPlanBoth);
        if (!grant.ok())
        {
            report(grant.code, grant.message);
            return -1;
        }
        mGeom = g;
        std::copy(x.dims.begin(), x.dims.end(), mXDims);
        mIo = in[kInputX].type == DataType::kHALF ? IoType::kFloat16 : IoType::kFloat32;
        mGrantedBytes = grant.bytes;
        mGeomValid = true;
        return 0;
    });
}

int32_t FFTConvPlugin::enqueue(nvinfer1::PluginTensorDesc const* inputDesc,
    nvinfer1::PluginTensorDesc const* /*outputDesc*/, void const* const* inputs, void* const* outputs, void* workspace,
    cudaStream_t stream) noexcept
{
    return guarded(mRecorder, "enqueue", int32_t{-1}, [&]() -> int32_t {
        if (!mGeomValid)
        {
            report(ErrorCode::kINVALID_STATE, "enqueue before a successful onShapeChange");
            return -1;
        }
        if (inputDesc == nullptr || inputs == nullptr || outputs == nullptr)
        {
            report(ErrorCode::kINVALID_ARGUMENT, "enqueue: null descriptors or buffers");
            return -1;
        }
        nvinfer1::Dims const& xd = inputDesc[kInputX].dims;
        if (xd.nbDims != 4 || xd.d[0] != mXDims[0] || xd.d[1] != mXDims[1] || xd.d[2] != mXDims[2]
            || xd.d[3] != mXDims[3])
        {
            report(ErrorCode::kINVALID_STATE, "enqueue: X shape differs from the last onShapeChange");
            return -1;
        }
        LaunchArgs a;
        a.geom = mGeom;
        a.io = mIo;
        a.x = inputs[kInputX];
        a.kf = static_cast<float const*>(inputs[kInputKf]);
        a.d = static_cast<float const*>(inputs[kInputD]);
        a.y = outputs[0];
        a.workspace = workspace;
        // What TensorRT provides (at least what getWorkspaceSize asked for this shape); run()
        // compares it with the layout its plans need and refuses rather than overrun it.
        a.workspaceBytes = mGrantedBytes;
        KernelResult const k = run(a, mPlans, stream);
        if (!k.ok())
        {
            report(ErrorCode::kFAILED_EXECUTION, "enqueue failed: " + kernelMessage(k));
            return -1;
        }
        return 0;
    });
}

nvinfer1::IPluginV3* FFTConvPlugin::attachToContext(nvinfer1::IPluginResourceContext* context) noexcept
{
    return guarded(mRecorder, "attachToContext", static_cast<nvinfer1::IPluginV3*>(nullptr),
        [&]() -> nvinfer1::IPluginV3* {
            auto* p = static_cast<FFTConvPlugin*>(clone());
            if (p != nullptr && context != nullptr)
            {
                p->mRecorder = context->getErrorRecorder();
            }
            return p;
        });
}

PluginFieldCollection const* FFTConvPlugin::getFieldsToSerialize() noexcept
{
    return guarded(mRecorder, "getFieldsToSerialize", static_cast<PluginFieldCollection const*>(nullptr),
        [&]() -> PluginFieldCollection const* {
            mModeStr = modeName(mAttrs.mode);
            mState = serializeAttributes(mAttrs);
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
                kFieldState, mState.data(), PluginFieldType::kINT8, static_cast<int32_t>(mState.size()));
            // The cuFFT work bytes per batch level the workspace request included.
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

// ---- FFTConvPluginCreator ----------------------------------------------------------------------------
FFTConvPluginCreator::FFTConvPluginCreator()
{
    // The fields the ONNX parser looks up on the node (plugin_namespace/plugin_version are
    // read by the parser itself). The state blob is only written by getFieldsToSerialize.
    mFieldNames.emplace_back(kFieldMode, nullptr, PluginFieldType::kCHAR, 0);
    mFieldNames.emplace_back(kFieldKernelSize, nullptr, PluginFieldType::kINT32, 0);
    mFieldNames.emplace_back(kFieldFftSize, nullptr, PluginFieldType::kINT32, 0);
    // Checked against fft_size in 2d_circular; ignored by the linear modes.
    mFieldNames.emplace_back(kFieldSpatialSize, nullptr, PluginFieldType::kINT32, 0);
    mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
    mFieldCollection.fields = mFieldNames.data();
}

char const* FFTConvPluginCreator::getPluginName() const noexcept
{
    return kPluginName;
}

char const* FFTConvPluginCreator::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* FFTConvPluginCreator::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

PluginFieldCollection const* FFTConvPluginCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
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
        auto const wt = fields.find(kFieldWorkTable);
        if (wt != fields.end())
        {
            table = wt->second.ints;
            r = wt->second.kind == AttrValue::Kind::kInts
                ? validateWorkTable(table)
                : Result::error(Status::kCorruptBuffer, std::string("field '") + kFieldWorkTable + "' must be ints");
            if (!r.ok())
            {
                reportTo(nullptr, toErrorCode(r.status), "createPlugin('" + layer + "'): " + r.message);
                return nullptr;
            }
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
