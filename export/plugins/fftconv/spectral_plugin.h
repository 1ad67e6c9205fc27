// hyena::RFFT2 / hyena::IRFFT2 -- TensorRT glue (IPluginV3 + IPluginCreatorV3One), TensorRT 10.x/11.x.
//
// One class for both directions (the direction is fixed per creator): it adapts TensorRT's
// plugin interfaces to spectral_core.h and spectral_kernels.cuh the way FFTConvPlugin does
// for FFTConv -- cuFFT plans per batch level made in onShapeChange only, the work area
// carved from TensorRT's workspace (its per-level size recorded in the engine), nothing
// allocated, planned or synchronised in enqueue, clone() copies the configured state and
// makes its own plans. Registered by the library next to FFTConv (fftconv_plugin.cpp).
#ifndef HYENA_SPECTRAL_PLUGIN_H
#define HYENA_SPECTRAL_PLUGIN_H

#include "plugin_common.h"
#include "spectral_core.h"
#include "spectral_kernels.cuh"

#include <NvInferRuntime.h>

#include <cstdint>
#include <string>
#include <vector>

namespace hyena
{
namespace fftconv
{

class SpectralPlugin final : public nvinfer1::IPluginV3,
                             public nvinfer1::IPluginV3OneCore,
                             public nvinfer1::IPluginV3OneBuild,
                             public nvinfer1::IPluginV3OneRuntime
{
public:
    SpectralPlugin(Direction dir, SpectralAttributes attrs, std::string layerName);
    ~SpectralPlugin() noexcept override;

    SpectralPlugin(SpectralPlugin const&) = delete;
    SpectralPlugin& operator=(SpectralPlugin const&) = delete;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

    Direction direction() const noexcept { return mDir; }
    SpectralAttributes const& attributes() const noexcept { return mAttrs; }
    std::vector<int64_t> const& workTable() const noexcept { return mWorkTable; }
    void setWorkTable(std::vector<int64_t> table) { mWorkTable = std::move(table); }

    //! What onShapeChange configured (and clone() copies).
    struct RuntimeState
    {
        Geometry geom{};
        int64_t xDims[4]{0, 0, 0, 0};
        IoType io{IoType::kFloat32};
        size_t grantedBytes{0};
        bool valid{false};
    };
    RuntimeState runtimeState() const noexcept;
    //! As FFTConvPlugin::adoptRuntimeState: copies the state and, if valid, makes this
    //! instance's own plans; on failure the state stays but is marked invalid.
    KernelResult adoptRuntimeState(RuntimeState const& state) noexcept;
    bool configured() const noexcept { return mState.valid; }

private:
    void report(nvinfer1::ErrorCode code, std::string const& msg) const noexcept;
    int32_t fail(Result const& r) const noexcept;

    Direction mDir;
    SpectralAttributes mAttrs;
    std::string mLayerName;
    nvinfer1::IErrorRecorder* mRecorder{nullptr};

    RuntimeState mState{};
    FftPlans mPlans{};
    mutable std::vector<int64_t> mWorkTable; //!< written by getWorkspaceSize (const), serialised

    // Storage behind getFieldsToSerialize().
    std::vector<int32_t> mSpatialOut;
    std::vector<int64_t> mWorkTableOut;
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

class SpectralPluginCreator final : public nvinfer1::IPluginCreatorV3One
{
public:
    explicit SpectralPluginCreator(Direction dir);
    ~SpectralPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    Direction mDir;
    std::vector<nvinfer1::PluginField> mFieldNames;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

} // namespace fftconv
} // namespace hyena

#endif // HYENA_SPECTRAL_PLUGIN_H
