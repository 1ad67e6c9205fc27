// hyena::RFFT2 / hyena::IRFFT2 -- TensorRT glue (IPluginV3 + IPluginCreatorV3One), TensorRT 10.x/11.x.
//
// One class for both directions (the direction is fixed per creator): it adapts TensorRT's
// plugin interfaces to spectral_core.h and spectral_kernels.cuh through PluginBase
// (plugin_common.h), as FFTConvPlugin does for FFTConv -- cuFFT plans per batch level made
// in onShapeChange only, the work area carved from TensorRT's workspace (its per-level size
// recorded in the engine), nothing allocated, planned or synchronised in enqueue, clone()
// copies the configured state and makes its own plans. Registered by the library next to
// FFTConv (fftconv_plugin.cpp).
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

//! The lifecycle (capabilities, clone, plans, workspace, work table) is PluginBase's.
class SpectralPlugin final : public PluginBase
{
public:
    SpectralPlugin(Direction dir, SpectralAttributes attrs, std::string layerName);

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;

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
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

    Direction direction() const noexcept { return mDir; }
    SpectralAttributes const& attributes() const noexcept { return mAttrs; }

private:
    PluginBase* newUnconfigured() const override;

    Direction mDir;
    SpectralAttributes mAttrs;
    std::vector<int32_t> mSpatialOut; //!< storage behind getFieldsToSerialize()
};

class SpectralPluginCreator final : public PluginCreatorBase
{
public:
    explicit SpectralPluginCreator(Direction dir);

    char const* getPluginName() const noexcept override;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    Direction mDir;
};

} // namespace fftconv
} // namespace hyena

#endif // HYENA_SPECTRAL_PLUGIN_H
