// Glue shared by the plugins of the library (FFTConv, RFFT2, IRFFT2): see plugin_common.h.
#include "plugin_common.h"

#include <algorithm>
#include <cstdio>
#include <mutex>

using nvinfer1::DataType;
using nvinfer1::ErrorCode;
using nvinfer1::ILogger;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginFieldType;

namespace hyena
{
namespace fftconv
{

// ---- logging ------------------------------------------------------------------------------
namespace
{
std::mutex gLoggerMutex;
nvinfer1::ILoggerFinder* gLoggerFinder{nullptr};

ILogger* pluginLogger() noexcept
{
    {
        std::lock_guard<std::mutex> lock(gLoggerMutex);
        if (gLoggerFinder != nullptr)
        {
            if (ILogger* l = gLoggerFinder->findLogger())
            {
                return l;
            }
        }
    }
    return ::getLogger(); // TensorRT's global logger (may be null)
}
} // namespace

void setLoggerFinderInstance(nvinfer1::ILoggerFinder* finder) noexcept
{
    std::lock_guard<std::mutex> lock(gLoggerMutex);
    if (finder != nullptr)
    {
        gLoggerFinder = finder;
    }
}

void logMessage(ILogger::Severity sev, std::string const& msg) noexcept
{
    try
    {
        std::string const full = std::string("[hyena] ") + msg;
        if (ILogger* l = pluginLogger())
        {
            l->log(sev, full.c_str());
        }
        else if (sev <= ILogger::Severity::kWARNING)
        {
            std::fprintf(stderr, "%s\n", full.c_str());
        }
    }
    catch (...)
    {
    }
}

void reportTo(nvinfer1::IErrorRecorder* recorder, ErrorCode code, std::string const& msg) noexcept
{
    try
    {
        if (recorder != nullptr)
        {
            std::string const full = std::string("[hyena] ") + msg;
            recorder->reportError(code, full.c_str());
            return;
        }
    }
    catch (...)
    {
    }
    logMessage(ILogger::Severity::kERROR, msg);
}

ErrorCode toErrorCode(Status s) noexcept
{
    switch (s)
    {
    case Status::kOk: return ErrorCode::kSUCCESS;
    case Status::kInvalidAttribute:
    case Status::kInvalidShape: return ErrorCode::kINVALID_ARGUMENT;
    case Status::kUnsupportedType: return ErrorCode::kUNSUPPORTED_STATE;
    case Status::kCorruptBuffer: return ErrorCode::kINVALID_CONFIG;
    case Status::kInternal: break;
    }
    return ErrorCode::kINTERNAL_ERROR;
}

// ---- conversions ----------------------------------------------------------------------------
DType toDType(DataType t) noexcept
{
    switch (t)
    {
    case DataType::kFLOAT: return DType::kFloat32;
    case DataType::kHALF: return DType::kFloat16;
    default: return DType::kOther;
    }
}

std::vector<int64_t> toVector(nvinfer1::Dims const& d)
{
    std::vector<int64_t> v;
    for (int32_t i = 0; i < d.nbDims; ++i)
    {
        v.push_back(static_cast<int64_t>(d.d[i]));
    }
    return v;
}

TensorInfo toInfo(nvinfer1::Dims const& dims, DataType type)
{
    return TensorInfo{toVector(dims), toDType(type)};
}

std::string kernelMessage(KernelResult const& r)
{
    return std::string(kernelStatusName(r.status)) + " " + std::to_string(r.detail) + " in " + r.where;
}

// ---- fields -> core -----------------------------------------------------------------------------
Result fieldsToAttrMap(PluginFieldCollection const* fc, AttrMap& out)
{
    out.clear();
    if (fc == nullptr)
    {
        return Result::error(Status::kInvalidAttribute, "null PluginFieldCollection");
    }
    if (fc->nbFields < 0 || (fc->nbFields > 0 && fc->fields == nullptr))
    {
        return Result::error(Status::kInvalidAttribute, "malformed PluginFieldCollection");
    }
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        if (f.name == nullptr)
        {
            continue;
        }
        std::string const name(f.name);
        if (f.length < 0 || (f.length > 0 && f.data == nullptr))
        {
            return Result::error(Status::kInvalidAttribute, "field '" + name + "' has no data");
        }
        size_t const n = static_cast<size_t>(f.length);
        if (name == kFieldState)
        {
            if (f.type != PluginFieldType::kINT8 && f.type != PluginFieldType::kUNKNOWN)
            {
                return Result::error(Status::kInvalidAttribute, "field '" + name + "' must be bytes (kINT8)");
            }
            auto const* p = static_cast<uint8_t const*>(f.data);
            out[name] = AttrValue::makeBytes(std::vector<uint8_t>(p, p + n));
            continue;
        }
        switch (f.type)
        {
        case PluginFieldType::kCHAR:
        {
            // The ONNX parser passes the string with its NUL (length = size + 1); stop at the first NUL.
            auto const* p = static_cast<char const*>(f.data);
            size_t len = 0;
            while (len < n && p[len] != '\0')
            {
                ++len;
            }
            out[name] = AttrValue::makeString(std::string(p, len));
            break;
        }
        case PluginFieldType::kINT32:
        {
            auto const* p = static_cast<int32_t const*>(f.data);
            out[name] = AttrValue::makeInts(std::vector<int64_t>(p, p + n));
            break;
        }
        case PluginFieldType::kINT64:
        {
            auto const* p = static_cast<int64_t const*>(f.data);
            out[name] = AttrValue::makeInts(std::vector<int64_t>(p, p + n));
            break;
        }
        case PluginFieldType::kINT16:
        {
            auto const* p = static_cast<int16_t const*>(f.data);
            out[name] = AttrValue::makeInts(std::vector<int64_t>(p, p + n));
            break;
        }
        case PluginFieldType::kINT8:
        {
            auto const* p = static_cast<int8_t const*>(f.data);
            out[name] = AttrValue::makeInts(std::vector<int64_t>(p, p + n));
            break;
        }
        default:
            // Fields this op does not know (of any type) are ignored by the core; ours must
            // be one of the types above, which parseAttributes then checks by kind.
            if (name == kFieldMode || name == kFieldKernelSize || name == kFieldFftSize || name == kFieldSpatialSize)
            {
                return Result::error(Status::kInvalidAttribute,
                    "field '" + name + "' has unsupported type " + std::to_string(static_cast<int32_t>(f.type)));
            }
            break;
        }
    }
    return Result::success();
}

// ---- workspace ---------------------------------------------------------------------------------
size_t sizeWorkspace(Geometry const& g, int32_t directions, std::vector<int64_t>& record, std::string& warning)
{
    warning.clear();
    int32_t const levels = planLevels(g.batch);
    std::vector<int64_t> table(static_cast<size_t>(levels), 0);
    if (levels > 0)
    {
        KernelResult const k = queryWorkBytes(g, levels, table.data(), directions);
        if (!k.ok())
        {
            std::fill(table.begin(), table.end(), 0);
            warning = "cannot size the cuFFT work area (" + kernelMessage(k)
                + "); reserving none, so the engine will refuse to run where cuFFT needs one";
        }
    }
    if (record.size() < table.size())
    {
        record.resize(table.size(), 0);
    }
    for (size_t i = 0; i < table.size(); ++i)
    {
        record[i] = std::max(record[i], table[i]);
    }
    bool covered = false;
    return workspaceLayout(g, workReserveFor(table, g.batch, covered)).totalBytes;
}

WorkspaceGrant grantWorkspace(
    Geometry const& g, FftPlans const& plans, std::vector<int64_t> const& record, int32_t directions)
{
    WorkspaceGrant grant;
    bool covered = false;
    size_t const needWork = plansWorkBytes(plans, g.batch, covered);
    size_t const need = workspaceLayout(g, needWork).totalBytes;
    // What TensorRT provides: at least getWorkspaceSize of this shape (it asked for the
    // profile's largest), i.e. the buffers plus the work bytes recorded per level.
    size_t reserve = 0;
    if (!record.empty())
    {
        reserve = workReserveFor(record, g.batch, covered);
        if (!covered)
        {
            grant.status = Status::kInvalidShape;
            grant.code = toErrorCode(grant.status);
            grant.message
                = "batch " + std::to_string(g.batch) + " is larger than any profile the workspace was sized for";
            return grant;
        }
    }
    else
    {
        // No record (engine from an older plugin, or a builder-side instance that was not
        // sized): size it as getWorkspaceSize would for this shape.
        std::vector<int64_t> table(static_cast<size_t>(planLevels(g.batch)), 0);
        KernelResult const k = queryWorkBytes(g, static_cast<int32_t>(table.size()), table.data(), directions);
        if (!k.ok())
        {
            grant.status = Status::kInternal;
            grant.code = nvinfer1::ErrorCode::kFAILED_INITIALIZATION;
            grant.message = "cannot size the cuFFT work area: " + kernelMessage(k);
            return grant;
        }
        reserve = workReserveFor(table, g.batch, covered);
    }
    grant.bytes = workspaceLayout(g, reserve).totalBytes;
    if (need > grant.bytes)
    {
        grant.status = Status::kInternal;
        grant.code = toErrorCode(grant.status);
        grant.message = "cuFFT needs a " + std::to_string(needWork) + "-byte work area for batch "
            + std::to_string(g.batch) + " but the engine's workspace holds " + std::to_string(reserve)
            + " (engine built with another cuFFT or GPU? rebuild it)";
    }
    return grant;
}

// ---- field helpers ---------------------------------------------------------------------------
std::vector<int64_t> knownDims(nvinfer1::DimsExprs const& e)
{
    std::vector<int64_t> v;
    for (int32_t i = 0; i < e.nbDims; ++i)
    {
        v.push_back(e.d[i] != nullptr && e.d[i]->isConstant() ? e.d[i]->getConstantValue() : -1);
    }
    return v;
}

Result readWorkTable(AttrMap const& fields, std::vector<int64_t>& table)
{
    table.clear();
    auto const wt = fields.find(kFieldWorkTable);
    if (wt == fields.end())
    {
        return Result{};
    }
    table = wt->second.ints;
    return wt->second.kind == AttrValue::Kind::kInts
        ? validateWorkTable(table)
        : Result::error(Status::kCorruptBuffer, std::string("field '") + kFieldWorkTable + "' must be ints");
}

// ---- PluginBase ------------------------------------------------------------------------------
PluginBase::PluginBase(std::string layerName, int32_t planDirections)
    : mLayerName(std::move(layerName))
    , mPlanDirections(planDirections)
{
}

PluginBase::~PluginBase() noexcept
{
    destroyPlans(mPlans);
}

void PluginBase::report(ErrorCode code, std::string const& msg) const noexcept
{
    try
    {
        reportTo(mRecorder, code,
            std::string(getPluginName()) + (mLayerName.empty() ? ": " : " layer '" + mLayerName + "': ") + msg);
    }
    catch (...)
    {
    }
}

int32_t PluginBase::fail(Result const& r) const noexcept
{
    report(toErrorCode(r.status), r.message);
    return -1;
}

nvinfer1::IPluginCapability* PluginBase::getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

char const* PluginBase::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* PluginBase::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

KernelResult PluginBase::adoptRuntimeState(RuntimeState const& state) noexcept
{
    mState = state;
    mState.valid = false;
    if (!state.valid)
    {
        return KernelResult{};
    }
    KernelResult const k = ensurePlans(mState.geom, mPlans, nullptr, mPlanDirections);
    mState.valid = k.ok();
    return k;
}

nvinfer1::IPluginV3* PluginBase::clone() noexcept
{
    return guarded(mRecorder, "clone", static_cast<nvinfer1::IPluginV3*>(nullptr), [&]() -> nvinfer1::IPluginV3* {
        PluginBase* p = newUnconfigured();
        p->mRecorder = mRecorder;
        // The configured state (geometry, X dims, I/O type, workspace grant, validity) and
        // the work table travel with the clone. cuFFT handles are per instance: a configured
        // clone makes its own plans now (outside enqueue); if that fails it stays
        // unconfigured and enqueue refuses until the next onShapeChange.
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

nvinfer1::IPluginV3* PluginBase::attachToContext(nvinfer1::IPluginResourceContext* context) noexcept
{
    return guarded(mRecorder, "attachToContext", static_cast<nvinfer1::IPluginV3*>(nullptr),
        [&]() -> nvinfer1::IPluginV3* {
            auto* p = static_cast<PluginBase*>(clone());
            if (p != nullptr && context != nullptr)
            {
                p->mRecorder = context->getErrorRecorder();
            }
            return p;
        });
}

size_t PluginBase::requestWorkspace(Geometry const& g) const
{
    // Buffers for the largest batch + the cuFFT work area of every batch level up to it
    // (no plan made). What was asked for is remembered per level and serialised, so that
    // the runtime can check what it may use.
    std::string warning;
    size_t const bytes = sizeWorkspace(g, mPlanDirections, mWorkTable, warning);
    if (!warning.empty())
    {
        report(ErrorCode::kINTERNAL_ERROR, "getWorkspaceSize: " + warning);
    }
    return bytes;
}

int32_t PluginBase::configureRuntime(Geometry const& g, std::vector<int64_t> const& xDims, DataType xType)
{
    // cuFFT plans are made here, never in enqueue, and only for batch levels not seen
    // before (see ensurePlans): batch-size changes within what was seen make no plan.
    KernelResult const k = ensurePlans(g, mPlans, nullptr, mPlanDirections);
    if (!k.ok())
    {
        report(ErrorCode::kFAILED_INITIALIZATION, "cuFFT plan creation failed: " + kernelMessage(k));
        return -1;
    }
    WorkspaceGrant const grant = grantWorkspace(g, mPlans, mWorkTable, mPlanDirections);
    if (!grant.ok())
    {
        report(grant.code, grant.message);
        return -1;
    }
    mState.geom = g;
    std::copy(xDims.begin(), xDims.end(), mState.xDims);
    mState.io = xType == DataType::kHALF ? IoType::kFloat16 : IoType::kFloat32;
    mState.grantedBytes = grant.bytes;
    mState.valid = true;
    return 0;
}

bool PluginBase::readyToEnqueue(nvinfer1::PluginTensorDesc const* inputDesc, int32_t xIndex,
    void const* const* inputs, void* const* outputs) const noexcept
{
    if (!mState.valid)
    {
        report(ErrorCode::kINVALID_STATE, "enqueue before a successful onShapeChange");
        return false;
    }
    if (inputDesc == nullptr || inputs == nullptr || outputs == nullptr)
    {
        report(ErrorCode::kINVALID_ARGUMENT, "enqueue: null descriptors or buffers");
        return false;
    }
    nvinfer1::Dims const& xd = inputDesc[xIndex].dims;
    if (xd.nbDims != 4 || !std::equal(mState.xDims, mState.xDims + 4, xd.d))
    {
        report(ErrorCode::kINVALID_STATE, "enqueue: X shape differs from the last onShapeChange");
        return false;
    }
    return true;
}

int32_t PluginBase::launched(KernelResult const& k) const
{
    if (!k.ok())
    {
        report(ErrorCode::kFAILED_EXECUTION, "enqueue failed: " + kernelMessage(k));
        return -1;
    }
    return 0;
}

PluginFieldCollection const* PluginBase::finishFields()
{
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
}

// ---- PluginCreatorBase -------------------------------------------------------------------------
char const* PluginCreatorBase::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* PluginCreatorBase::getPluginNamespace() const noexcept
{
    return kPluginNamespace;
}

PluginFieldCollection const* PluginCreatorBase::getFieldNames() noexcept
{
    return &mFieldCollection;
}

void PluginCreatorBase::addFieldName(char const* name, PluginFieldType type, int32_t length)
{
    mFieldNames.emplace_back(name, nullptr, type, length);
    mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
    mFieldCollection.fields = mFieldNames.data();
}

} // namespace fftconv
} // namespace hyena
