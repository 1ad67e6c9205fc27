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

class FFTConvPlugin final : public nvinfer1::IPluginV3,
                            public nvinfer1::IPluginV3OneCore,
                            public nvinfer1::IPluginV3OneBuild,
                            public nvinfer1::IPluginV3OneRuntime
{
public:
    FFTConvPlugin(Attributes attrs, std::string layerName);
    ~FFTConvPlugin() noexcept override;

    FFTConvPlugin(FFTConvPlugin const&) = delete;
    FFTConvPlugin& operator=(FFTConvPlugin const&) = delete;

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

    Attributes const& attributes() const noexcept { return mAttrs; }
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
    RuntimeState runtimeState() const noexcept;
    //! Takes over a configured state, as clone() does: copies it and, if it is valid, makes
    //! this instance's own cuFFT plans (handles are never shared); if that fails the state is
    //! kept but marked invalid, and enqueue refuses until the next onShapeChange.
    KernelResult adoptRuntimeState(RuntimeState const& state) noexcept;
    bool configured() const noexcept { return mGeomValid; }

private:
    void report(nvinfer1::ErrorCode code, std::string const& msg) const noexcept;
    int32_t fail(Result const& r) const noexcept;

    Attributes mAttrs;
    std::string mLayerName;
    nvinfer1::IErrorRecorder* mRecorder{nullptr};

    // Runtime state (per execution context: TensorRT clones via attachToContext; clone()
    // copies all of it and makes its own plans, cuFFT handles are never shared).
    Geometry mGeom{};
    int64_t mXDims[4]{0, 0, 0, 0};
    bool mGeomValid{false};
    IoType mIo{IoType::kFloat32};
    size_t mGrantedBytes{0};
    FftPlans mPlans{};
    // Written by getWorkspaceSize (a const method: hence mutable), serialised with the engine.
    mutable std::vector<int64_t> mWorkTable;

    // Storage behind getFieldsToSerialize().
    std::string mModeStr;
    std::vector<uint8_t> mState;
    std::vector<int64_t> mWorkTableOut;
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

class FFTConvPluginCreator final : public nvinfer1::IPluginCreatorV3One
{
public:
    FFTConvPluginCreator();
    ~FFTConvPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFieldNames;
    nvinfer1::PluginFieldCollection mFieldCollection{};
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
