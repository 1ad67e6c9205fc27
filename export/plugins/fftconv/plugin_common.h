// Glue shared by the TensorRT plugins of the library (FFTConv, RFFT2, IRFFT2): logging and
// error reporting, TensorRT <-> core conversions, the exception barrier of every entry point,
// and PluginField -> core field map. Needs the TensorRT headers; no TensorRT library symbols
// besides getLogger().
#ifndef HYENA_PLUGIN_COMMON_H
#define HYENA_PLUGIN_COMMON_H

#include "fftconv_core.h"
#include "fftconv_kernels.cuh"

#include <NvInferRuntime.h>

#include <exception>
#include <cstdint>
#include <new>
#include <string>
#include <vector>

namespace hyena
{
namespace fftconv
{

//! The logger set by setLoggerFinder() (IPluginRegistry::loadLibrary) wins over TensorRT's
//! global logger; without either, warnings and errors go to stderr.
void setLoggerFinderInstance(nvinfer1::ILoggerFinder* finder) noexcept;
void logMessage(nvinfer1::ILogger::Severity sev, std::string const& msg) noexcept;
//! To the error recorder when there is one, else logged as an error.
void reportTo(nvinfer1::IErrorRecorder* recorder, nvinfer1::ErrorCode code, std::string const& msg) noexcept;
nvinfer1::ErrorCode toErrorCode(Status s) noexcept;
DType toDType(nvinfer1::DataType t) noexcept;
std::vector<int64_t> toVector(nvinfer1::Dims const& d);
TensorInfo toInfo(nvinfer1::Dims const& dims, nvinfer1::DataType type);
std::string kernelMessage(KernelResult const& r);

//! Converts TensorRT plugin fields to the core's name -> value map (strings stop at their
//! first NUL; integer lists of any width; the state blob as bytes).
Result fieldsToAttrMap(nvinfer1::PluginFieldCollection const* fc, AttrMap& out);

// ---- workspace: what getWorkspaceSize asks for and what onShapeChange may use ----------------

//! getWorkspaceSize for g (the profile's largest shapes): the buffers plus the cuFFT work area
//! of every batch level up to g.batch for `directions` (queryWorkBytes: no plan made). The
//! per-level work bytes are merged (max) into `record`, which the plugin serialises so the
//! runtime knows what was asked for. When cuFFT cannot size them (no GPU), nothing is
//! reserved for the work area and `warning` says so (the engine then refuses to run where
//! cuFFT needs one).
size_t sizeWorkspace(Geometry const& g, int32_t directions, std::vector<int64_t>& record, std::string& warning);

//! onShapeChange, after ensurePlans(g, plans): the workspace bytes TensorRT provides for g
//! (the buffers + the recorded work bytes of g's batch levels; without a record, sized as
//! getWorkspaceSize would) and whether the plans' real work area fits in it.
struct WorkspaceGrant
{
    Status status{Status::kOk};
    nvinfer1::ErrorCode code{nvinfer1::ErrorCode::kSUCCESS};
    std::string message;
    size_t bytes{0};
    bool ok() const noexcept { return status == Status::kOk; }
};
WorkspaceGrant grantWorkspace(
    Geometry const& g, FftPlans const& plans, std::vector<int64_t> const& record, int32_t directions);

//! The dims of e that are constants at network-definition time, -1 for the others.
std::vector<int64_t> knownDims(nvinfer1::DimsExprs const& e);

//! The optional work-table field of an engine (kFieldWorkTable) into `table` (left empty
//! when the field is absent), validated as validateWorkTable does.
Result readWorkTable(AttrMap const& fields, std::vector<int64_t>& table);

// ---- PluginBase: what FFTConvPlugin and SpectralPlugin do alike ----------------------------
//
// Both plugins adapt TensorRT's IPluginV3 interfaces to a core (geometry + kernels) in the
// same way: capability lookup, name/version/namespace, an error recorder per instance,
// cuFFT plans per batch level made in onShapeChange only, the workspace sized in
// getWorkspaceSize and checked against what TensorRT grants, the work table serialised with
// the engine, clone() copying the configured state and making its own plans. That lifecycle
// lives here once; a derived plugin supplies only its tensors (shapes, types, validation),
// its geometry and its launch. Deriving is plain (virtual) inheritance rather than CRTP:
// the IPluginV3 methods are virtual anyway and one non-template class keeps the code in
// plugin_common.cpp.
class PluginBase : public nvinfer1::IPluginV3,
                   public nvinfer1::IPluginV3OneCore,
                   public nvinfer1::IPluginV3OneBuild,
                   public nvinfer1::IPluginV3OneRuntime
{
public:
    ~PluginBase() noexcept override;
    PluginBase(PluginBase const&) = delete;
    PluginBase& operator=(PluginBase const&) = delete;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    //! A new instance of the same attributes (newUnconfigured) that takes over the error
    //! recorder, the work table and the configured state (adoptRuntimeState).
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore (getPluginName is the derived plugin's)
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneRuntime: a clone reporting to the context's error recorder.
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;

    //! cuFFT work bytes per batch level that the workspace request included (see
    //! workReserveFor in fftconv_core.h); restored from the engine by createPlugin.
    std::vector<int64_t> const& workTable() const noexcept { return mWorkTable; }
    void setWorkTable(std::vector<int64_t> table) { mWorkTable = std::move(table); }

    //! What onShapeChange configured (and clone() copies).
    struct RuntimeState
    {
        Geometry geom{};
        int64_t xDims[4]{0, 0, 0, 0};
        IoType io{IoType::kFloat32};
        size_t grantedBytes{0}; //!< workspace bytes TensorRT is known to provide for xDims
        bool valid{false};      //!< set by a successful onShapeChange; enqueue needs it
    };
    RuntimeState runtimeState() const noexcept { return mState; }
    //! Takes over a configured state, as clone() does: copies it and, if it is valid, makes
    //! this instance's own cuFFT plans (handles are never shared); if that fails the state is
    //! kept but marked invalid, and enqueue refuses until the next onShapeChange.
    KernelResult adoptRuntimeState(RuntimeState const& state) noexcept;
    bool configured() const noexcept { return mState.valid; }

protected:
    //! planDirections: the cuFFT plans this plugin needs (kPlanBoth, kPlanR2C or kPlanC2R).
    PluginBase(std::string layerName, int32_t planDirections);

    //! A new instance with this one's attributes and layer name, not configured.
    virtual PluginBase* newUnconfigured() const = 0;

    //! To the error recorder (or the log), prefixed with the plugin and layer name.
    void report(nvinfer1::ErrorCode code, std::string const& msg) const noexcept;
    int32_t fail(Result const& r) const noexcept;

    //! getWorkspaceSize for g (the profile's largest shapes): sizeWorkspace, recording the
    //! per-level work bytes in the work table; a sizing warning is reported.
    size_t requestWorkspace(Geometry const& g) const;
    //! The end of onShapeChange for X (dims, TensorRT type) and its geometry g: cuFFT plans
    //! for batch levels not seen before (never in enqueue), the workspace grant, the state.
    int32_t configureRuntime(Geometry const& g, std::vector<int64_t> const& xDims, nvinfer1::DataType xType);
    //! The checks at the top of enqueue: configured, buffers present, X (input xIndex) of the
    //! shape onShapeChange saw. Reports and returns false when one fails.
    bool readyToEnqueue(nvinfer1::PluginTensorDesc const* inputDesc, int32_t xIndex, void const* const* inputs,
        void* const* outputs) const noexcept;
    //! The result of a launch as enqueue returns it.
    int32_t launched(KernelResult const& k) const;
    //! getFieldsToSerialize, after the derived plugin filled mFields: appends the work table
    //! (when there is one) and returns the collection over mFields.
    nvinfer1::PluginFieldCollection const* finishFields();

    std::string const mLayerName;
    nvinfer1::IErrorRecorder* mRecorder{nullptr};
    // Runtime state (per execution context: TensorRT clones via attachToContext).
    RuntimeState mState{};
    FftPlans mPlans{};
    // Storage behind getFieldsToSerialize().
    std::vector<nvinfer1::PluginField> mFields;

private:
    int32_t const mPlanDirections;
    // Written by getWorkspaceSize (a const method: hence mutable), serialised with the engine.
    mutable std::vector<int64_t> mWorkTable;
    std::vector<int64_t> mWorkTableOut;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

// ---- PluginCreatorBase: version, namespace and field names of every creator ------------------
class PluginCreatorBase : public nvinfer1::IPluginCreatorV3One
{
public:
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;

protected:
    //! A field the ONNX parser looks up on the node (plugin_namespace/plugin_version are
    //! read by the parser itself).
    void addFieldName(char const* name, nvinfer1::PluginFieldType type, int32_t length);

private:
    std::vector<nvinfer1::PluginField> mFieldNames;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

// Pre-C++20 stand-in for try/catch around every entry point.
template <typename F, typename R>
R guarded(nvinfer1::IErrorRecorder* recorder, char const* where, R onError, F&& f) noexcept
{
    try
    {
        return f();
    }
    catch (std::bad_alloc const&)
    {
        reportTo(recorder, nvinfer1::ErrorCode::kFAILED_ALLOCATION, std::string(where) + ": out of memory");
    }
    catch (std::exception const& e)
    {
        reportTo(recorder, nvinfer1::ErrorCode::kINTERNAL_ERROR, std::string(where) + ": " + e.what());
    }
    catch (...)
    {
        reportTo(recorder, nvinfer1::ErrorCode::kINTERNAL_ERROR, std::string(where) + ": unknown exception");
    }
    return onError;
}

} // namespace fftconv
} // namespace hyena

#endif // HYENA_PLUGIN_COMMON_H
