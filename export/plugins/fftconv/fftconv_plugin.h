// hyena::FFTConv -- TensorRT glue (IPluginV3 + IPluginCreatorV3One), TensorRT 10.x/11.x.
//
// This file only adapts TensorRT's plugin interfaces to the CPU core (fftconv_core.h)
// and the CUDA side (fftconv_kernels.cuh). Every TensorRT entry point is noexcept and
// reports errors through the context's IErrorRecorder when it has one, else the logger
// handed over by setLoggerFinder(), else TensorRT's global logger, else stderr.
//
// Registration (see fftconv_plugin.cpp for the details):
//   * a static initializer registers the creator when the library is loaded (Triton's
//     TensorRT backend dlopens plugin libraries and never calls getCreators);
//   * getCreators()/setLoggerFinder() are exported for IPluginRegistry::loadLibrary and
//     trtexec --dynamicPlugins; getCreators() hands the statically registered creator
//     over (deregisters it) because loadLibrary fails if a creator is already registered.
//   * HYENA_FFTCONV_NO_STATIC_REGISTRATION=1 in the environment disables the static path.
#ifndef HYENA_FFTCONV_PLUGIN_H
#define HYENA_FFTCONV_PLUGIN_H

#include "fftconv_core.h"
#include "fftconv_kernels.cuh"
#include "plugin_common.h"

#include <NvInferRuntime.h>

#include <cstdint>
#include <string>
#include <vector>

namespace hyena
{
namespace fftconv
{

//! The lifecycle (capabilities, clone, plans, workspace, work table) is PluginBase's.
class FFTConvPlugin final : public PluginBase
{
public:
    FFTConvPlugin(Attributes attrs, std::string layerName);

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

    Attributes const& attributes() const noexcept { return mAttrs; }

private:
    PluginBase* newUnconfigured() const override;

    Attributes mAttrs;
    // Storage behind getFieldsToSerialize() (besides PluginBase's).
    std::string mModeStr;
    std::vector<uint8_t> mStateBlob;
};

class FFTConvPluginCreator final : public PluginCreatorBase
{
public:
    FFTConvPluginCreator();

    char const* getPluginName() const noexcept override;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;
};

} // namespace fftconv
} // namespace hyena

#if defined(_WIN32)
#define HYENA_FFTCONV_EXPORT __declspec(dllexport)
#else
#define HYENA_FFTCONV_EXPORT __attribute__((visibility("default")))
#endif

//! Entry points of a TensorRT plugin shared library (IPluginRegistry::loadLibrary).
extern "C" HYENA_FFTCONV_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);
extern "C" HYENA_FFTCONV_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder);
//! Number of cuFFT plans the plugin has made in this process (hyena::fftconv::cufftPlansCreated),
//! for engine-level tests: e.g. ctypes.CDLL(path).hyena_fftconv_cufft_plans_created with
//! restype c_int64; it must not grow after the first enqueue of each batch size.
extern "C" HYENA_FFTCONV_EXPORT int64_t hyena_fftconv_cufft_plans_created();

#endif // HYENA_FFTCONV_PLUGIN_H
