// Host-side test of the TensorRT glue against TensorRT *headers* only (no libnvinfer, no GPU).
//
// It provides its own getPluginRegistry()/getLogger() (a mock registry that, like
// TensorRT's, refuses a second registration of the same creator), links the plugin
// objects into one executable and checks, for FFTConv (modes 2d and 2d_circular) and for
// RFFT2 / IRFFT2: static registration at load of all three creators, the getCreators()
// hand-over for loadLibrary, createPlugin from parser-style fields, the build interface
// (types, formats, configure, workspace incl. the cuFFT work table), field serialisation
// round trip and rejection of corrupt state, clone/attachToContext (state copied), and
// that the runtime entry points fail
// cleanly (error reported, no throw, no crash) on a host without a GPU.
// Never link this with the real libnvinfer (it defines TensorRT's registry symbols).
#include "fftconv_plugin.h"
#include "spectral_plugin.h"
#include "test_check.h"

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using namespace nvinfer1;
using namespace hyena::fftconv;

#define CHECK_STATUS_OK(expr) CHECK((expr).ok())

namespace
{
class MockLogger : public ILogger
{
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        if (severity <= Severity::kWARNING)
        {
            ++nbErrorsOrWarnings;
            last = msg;
        }
    }
    int nbErrorsOrWarnings{0};
    std::string last;
};

class MockRecorder : public IErrorRecorder
{
public:
    int32_t getNbErrors() const noexcept override { return static_cast<int32_t>(errors.size()); }
    ErrorCode getErrorCode(int32_t i) const noexcept override { return codes.at(static_cast<size_t>(i)); }
    ErrorDesc getErrorDesc(int32_t i) const noexcept override { return errors.at(static_cast<size_t>(i)).c_str(); }
    bool hasOverflowed() const noexcept override { return false; }
    void clear() noexcept override
    {
        errors.clear();
        codes.clear();
    }
    bool reportError(ErrorCode val, ErrorDesc desc) noexcept override
    {
        codes.push_back(val);
        errors.emplace_back(desc);
        return true;
    }
    RefCount incRefCount() noexcept override { return ++refs; }
    RefCount decRefCount() noexcept override { return --refs; }
    std::vector<std::string> errors;
    std::vector<ErrorCode> codes;
    RefCount refs{0};
};

class MockContext : public IPluginResourceContext
{
public:
    explicit MockContext(IErrorRecorder* r)
        : recorder(r)
    {
    }
    IGpuAllocator* getGpuAllocator() const noexcept override { return nullptr; }
    IErrorRecorder* getErrorRecorder() const noexcept override { return recorder; }
    IErrorRecorder* recorder;
};

class MockRegistry : public IPluginRegistry
{
public:
    std::vector<IPluginCreatorInterface*> creators;
    std::vector<std::string> namespaces;

    bool registerCreator(IPluginCreatorInterface& creator, AsciiChar const* const ns) noexcept override
    {
        for (auto* c : creators)
        {
            if (c == &creator)
            {
                return false; // already registered: TensorRT refuses duplicates
            }
        }
        creators.push_back(&creator);
        namespaces.emplace_back(ns != nullptr ? ns : "");
        return true;
    }
    bool deregisterCreator(IPluginCreatorInterface const& creator) noexcept override
    {
        for (size_t i = 0; i < creators.size(); ++i)
        {
            if (creators[i] == &creator)
            {
                creators.erase(creators.begin() + static_cast<std::ptrdiff_t>(i));
                namespaces.erase(namespaces.begin() + static_cast<std::ptrdiff_t>(i));
                return true;
            }
        }
        return false;
    }
    IPluginCreatorInterface* const* getAllCreators(int32_t* const n) const noexcept override
    {
        *n = static_cast<int32_t>(creators.size());
        return creators.empty() ? nullptr : creators.data();
    }
    IPluginCreatorInterface* const* getAllCreatorsRecursive(int32_t* const n) noexcept
    {
        return getAllCreators(n);
    }
    IPluginCreatorInterface* getCreator(
        AsciiChar const* const name, AsciiChar const* const version, AsciiChar const* const ns) noexcept override
    {
        for (auto* c : creators)
        {
            auto* v3 = static_cast<IPluginCreatorV3One*>(c);
            if (std::strcmp(v3->getPluginName(), name) == 0 && std::strcmp(v3->getPluginVersion(), version) == 0
                && std::strcmp(v3->getPluginNamespace(), ns) == 0)
            {
                return c;
            }
        }
        return nullptr;
    }
    void setErrorRecorder(IErrorRecorder* const) noexcept override {}
    IErrorRecorder* getErrorRecorder() const noexcept override { return nullptr; }
    bool isParentSearchEnabled() const override { return false; }
    void setParentSearchEnabled(bool const) override {}
    PluginLibraryHandle loadLibrary(AsciiChar const*) noexcept override { return nullptr; }
    void deregisterLibrary(PluginLibraryHandle) noexcept override {}
    IPluginResource* acquirePluginResource(AsciiChar const*, IPluginResource*) noexcept override { return nullptr; }
    int32_t releasePluginResource(AsciiChar const*) noexcept override { return 0; }
#if NV_TENSORRT_MAJOR < 11
    // The deprecated IPluginV2-creator overloads still pure virtual in TensorRT 10.
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
#endif
    bool registerCreator(IPluginCreator&, AsciiChar const* const) noexcept override { return false; }
    IPluginCreator* const* getPluginCreatorList(int32_t* const n) const noexcept override
    {
        *n = 0;
        return nullptr;
    }
    IPluginCreator* getPluginCreator(AsciiChar const* const, AsciiChar const* const, AsciiChar const* const) noexcept override
    {
        return nullptr;
    }
    bool deregisterCreator(IPluginCreator const&) noexcept override { return false; }
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
#endif
};

// A stand-in for TensorRT's expression builder (the interfaces are thin wrappers around
// apiv:: implementations, which a test can provide): constants, and operations that fold
// when both operands are constant and otherwise record what they were asked.
class MockExpr : public IDimensionExpr
{
public:
    MockExpr(bool isConst, int64_t value, DimensionOperation op = DimensionOperation::kSUM,
        IDimensionExpr const* first = nullptr, IDimensionExpr const* second = nullptr)
        : op(op)
        , first(first)
        , second(second)
        , mState(isConst, value)
    {
        mImpl = &mState;
    }
    ~MockExpr() noexcept override = default;

    DimensionOperation op;
    IDimensionExpr const* first;
    IDimensionExpr const* second;

private:
    struct State : apiv::VDimensionExpr
    {
        State(bool c, int64_t v)
            : isConst(c)
            , value(v)
        {
        }
        bool isConstant() const override { return isConst; }
        int64_t getConstantValue() const override { return isConst ? value : INT64_MIN; }
        bool isSizeTensor() const override { return false; }
        bool isConst;
        int64_t value;
    } mState;
};

class MockExprBuilder : public IExprBuilder
{
public:
    MockExprBuilder()
        : mState(this)
    {
        mImpl = &mState;
    }
    ~MockExprBuilder() noexcept override = default;

    //! An input dimension: a constant, or symbolic when value < 0.
    IDimensionExpr const* dim(int64_t value) { return make(value >= 0, value); }

    IDimensionExpr const* make(bool isConst, int64_t value, DimensionOperation op = DimensionOperation::kSUM,
        IDimensionExpr const* a = nullptr, IDimensionExpr const* b = nullptr)
    {
        exprs.push_back(std::make_unique<MockExpr>(isConst, value, op, a, b));
        return exprs.back().get();
    }

    std::vector<std::unique_ptr<MockExpr>> exprs;

private:
    struct State : apiv::VExprBuilder
    {
        explicit State(MockExprBuilder* o)
            : owner(o)
        {
        }
        IDimensionExpr const* constant(int64_t value) override { return owner->make(true, value); }
        IDimensionExpr const* operation(
            DimensionOperation op, IDimensionExpr const& a, IDimensionExpr const& b) override
        {
            if (a.isConstant() && b.isConstant())
            {
                int64_t const x = a.getConstantValue();
                int64_t const y = b.getConstantValue();
                int64_t const v = op == DimensionOperation::kPROD ? x * y
                    : op == DimensionOperation::kFLOOR_DIV        ? x / y
                                                                  : INT64_MIN; // not used by the plugins
                return owner->make(true, v, op, &a, &b);
            }
            return owner->make(false, 0, op, &a, &b);
        }
        IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override
        {
            return nullptr;
        }
        MockExprBuilder* owner;
    } mState;
};

DimsExprs dimsExprs(MockExprBuilder& eb, std::vector<int64_t> const& dims)
{
    DimsExprs e{};
    e.nbDims = static_cast<int32_t>(dims.size());
    for (size_t i = 0; i < dims.size(); ++i)
    {
        e.d[i] = eb.dim(dims[i]);
    }
    return e;
}

bool isConst(IDimensionExpr const* e, int64_t v)
{
    return e != nullptr && e->isConstant() && e->getConstantValue() == v;
}

bool haveGpuHost()
{
    int deviceCount = 0;
    return cudaGetDeviceCount(&deviceCount) == cudaSuccess && deviceCount > 0;
}

MockRegistry& registry()
{
    static MockRegistry r;
    return r;
}

MockLogger& logger()
{
    static MockLogger l;
    return l;
}

DynamicPluginTensorDesc tensor(std::vector<int64_t> const& dims, DataType type, std::vector<int64_t> const& maxDims = {})
{
    DynamicPluginTensorDesc t{};
    t.desc.dims.nbDims = static_cast<int32_t>(dims.size());
    t.max.nbDims = t.min.nbDims = t.opt.nbDims = static_cast<int32_t>(dims.size());
    for (size_t i = 0; i < dims.size(); ++i)
    {
        t.desc.dims.d[i] = dims[i];
        int64_t const m = maxDims.empty() ? dims[i] : maxDims[i];
        t.max.d[i] = t.min.d[i] = t.opt.d[i] = m;
    }
    t.desc.type = type;
    t.desc.format = TensorFormat::kLINEAR;
    t.desc.scale = 1.0f;
    return t;
}

// FFTConv in mode 2d_circular (GFNet S18 stage 3: 320 x 14 x 14): parser fields incl.
// spatial_size, configure, workspace, serialisation round trip.
void checkCircular(IPluginCreatorV3One* creator)
{
    char const mode[] = "2d_circular";
    int32_t const ks[2] = {14, 14};
    int32_t const sp[2] = {14, 14};
    std::vector<PluginField> fields{PluginField{"mode", mode, PluginFieldType::kCHAR, sizeof(mode)},
        PluginField{"kernel_size", ks, PluginFieldType::kINT32, 2}, PluginField{"fft_size", ks, PluginFieldType::kINT32, 2},
        PluginField{"spatial_size", sp, PluginFieldType::kINT32, 2}};
    PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
    IPluginV3* p = creator->createPlugin("gf_stage3", &fc, TensorRTPhase::kBUILD);
    CHECK(p != nullptr);
    if (p == nullptr)
    {
        return;
    }
    auto* plugin = static_cast<FFTConvPlugin*>(p);
    CHECK(plugin->attributes().mode == Mode::k2DCircular && plugin->attributes().fftSize == (std::vector<int32_t>{14, 14}));
    // spatial_size disagreeing with fft_size, a filter smaller than the map, or a spatial_size
    // of the wrong type: refused.
    int32_t const other[2] = {14, 13};
    std::vector<PluginField> bad = fields;
    bad[3] = PluginField{"spatial_size", other, PluginFieldType::kINT32, 2};
    PluginFieldCollection badFc{4, bad.data()};
    CHECK(creator->createPlugin("bad", &badFc, TensorRTPhase::kBUILD) == nullptr);
    int32_t const small[2] = {13, 13};
    bad = fields;
    bad[1] = PluginField{"kernel_size", small, PluginFieldType::kINT32, 2};
    CHECK(creator->createPlugin("bad", &badFc, TensorRTPhase::kBUILD) == nullptr);
    float const notInts[2] = {14.0f, 14.0f};
    bad = fields;
    bad[3] = PluginField{"spatial_size", notInts, PluginFieldType::kFLOAT32, 2};
    CHECK(creator->createPlugin("bad", &badFc, TensorRTPhase::kBUILD) == nullptr);

    auto* build = static_cast<IPluginV3OneBuild*>(p->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* rt = static_cast<IPluginV3OneRuntime*>(p->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    std::vector<DynamicPluginTensorDesc> io{tensor({-1, 320, 14, 14}, DataType::kHALF, {8, 320, 14, 14}),
        tensor({320, 14, 8, 2}, DataType::kFLOAT), tensor({320}, DataType::kFLOAT),
        tensor({-1, 320, 14, 14}, DataType::kHALF, {8, 320, 14, 14})};
    CHECK(build->configurePlugin(io.data(), 3, io.data() + 3, 1) == 0);
    {
        // getOutputShapes: Y is X's shape; a known map other than fft_size is refused.
        MockExprBuilder eb;
        DimsExprs in[3] = {dimsExprs(eb, {-1, 320, 14, 14}), dimsExprs(eb, {320, 14, 8, 2}), dimsExprs(eb, {320})};
        DimsExprs out[1]{};
        CHECK(build->getOutputShapes(in, 3, nullptr, 0, out, 1, eb) == 0);
        CHECK(out[0].nbDims == 4 && out[0].d[0] == in[0].d[0] && out[0].d[3] == in[0].d[3]);
        in[0] = dimsExprs(eb, {-1, 320, 14, 13});
        CHECK(build->getOutputShapes(in, 3, nullptr, 0, out, 1, eb) != 0);
    }
    size_t const buffers = size_t{8} * 320 * 14 * 14 * 4 + size_t{8} * 320 * 14 * 8 * 8; // no padding
    size_t const ws = build->getWorkspaceSize(io.data(), 3, io.data() + 3, 1);
    CHECK(ws >= buffers && (ws - buffers) % kWorkspaceAlignment == 0 && plugin->workTable().size() == 4);
    std::vector<DynamicPluginTensorDesc> badIo = io;
    badIo[0] = tensor({-1, 320, 28, 28}, DataType::kHALF, {8, 320, 28, 28}); // another map
    CHECK(build->configurePlugin(badIo.data(), 3, badIo.data() + 3, 1) != 0);
    badIo = io;
    badIo[1] = tensor({320, 28, 15, 2}, DataType::kFLOAT); // a padded (linear-mode) spectrum
    CHECK(build->configurePlugin(badIo.data(), 3, badIo.data() + 3, 1) != 0);

    PluginFieldCollection const* ser = rt->getFieldsToSerialize();
    CHECK(ser != nullptr && std::string(static_cast<char const*>(ser->fields[0].data)) == "2d_circular");
    IPluginV3* restored = creator->createPlugin("gf_stage3", ser, TensorRTPhase::kRUNTIME);
    CHECK(restored != nullptr);
    if (restored != nullptr)
    {
        CHECK(static_cast<FFTConvPlugin*>(restored)->attributes() == plugin->attributes());
        CHECK(static_cast<FFTConvPlugin*>(restored)->workTable() == plugin->workTable());
        delete restored;
    }
    delete p;
}

// RFFT2 / IRFFT2 (AFF S18 stage 3 channels, a 14 x 7 map: odd W): creator, fields, build
// interface, workspace, serialisation, clone, runtime errors.
void checkSpectral(IPluginCreatorV3One* creator, Direction dir)
{
    bool const fwd = dir == Direction::kForward;
    std::string const op = fwd ? "RFFT2" : "IRFFT2";
    CHECK(std::string(creator->getPluginName()) == op && std::string(creator->getPluginVersion()) == "1"
        && std::string(creator->getPluginNamespace()) == "hyena");
    PluginFieldCollection const* names = creator->getFieldNames();
    CHECK(names != nullptr && names->nbFields == 1 && std::string(names->fields[0].name) == "spatial_size"
        && names->fields[0].type == PluginFieldType::kINT32);

    int64_t const sp[2] = {14, 7}; // odd W: IRFFT2 needs spatial_size to tell 7 from 6
    std::vector<PluginField> fields{PluginField{"spatial_size", sp, PluginFieldType::kINT64, 2},
        PluginField{"plugin_namespace", "hyena", PluginFieldType::kCHAR, 6}};
    PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
    IPluginV3* p = creator->createPlugin("aff_stage3", &fc, TensorRTPhase::kBUILD);
    CHECK(p != nullptr);
    if (p == nullptr)
    {
        return;
    }
    auto* plugin = static_cast<SpectralPlugin*>(p);
    CHECK(plugin->direction() == dir && plugin->attributes().height == 14 && plugin->attributes().width == 7);
    auto* core = static_cast<IPluginV3OneCore*>(p->getCapabilityInterface(PluginCapabilityType::kCORE));
    auto* build = static_cast<IPluginV3OneBuild*>(p->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* rt = static_cast<IPluginV3OneRuntime*>(p->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    CHECK(core != nullptr && build != nullptr && rt != nullptr);
    CHECK(std::string(core->getPluginName()) == op && build->getNbOutputs() == 1);

    // Missing or malformed spatial_size -> nullptr, error logged.
    int const logged = logger().nbErrorsOrWarnings;
    PluginFieldCollection none{0, nullptr};
    CHECK(creator->createPlugin("none", &none, TensorRTPhase::kBUILD) == nullptr);
    int32_t const one[1] = {14};
    PluginField shortField{"spatial_size", one, PluginFieldType::kINT32, 1};
    PluginFieldCollection shortFc{1, &shortField};
    CHECK(creator->createPlugin("short", &shortFc, TensorRTPhase::kBUILD) == nullptr);
    int32_t const zero[2] = {14, 0};
    PluginField zeroField{"spatial_size", zero, PluginFieldType::kINT32, 2};
    PluginFieldCollection zeroFc{1, &zeroField};
    CHECK(creator->createPlugin("zero", &zeroFc, TensorRTPhase::kBUILD) == nullptr);
    CHECK(logger().nbErrorsOrWarnings >= logged + 3);

    // Types and formats: X fp32|fp16, Y = X's type, linear only.
    DataType outT{};
    DataType const inF[1] = {DataType::kFLOAT};
    DataType const inH[1] = {DataType::kHALF};
    DataType const inI[1] = {DataType::kINT32};
    CHECK(build->getOutputDataTypes(&outT, 1, inF, 1) == 0 && outT == DataType::kFLOAT);
    CHECK(build->getOutputDataTypes(&outT, 1, inH, 1) == 0 && outT == DataType::kHALF);
    CHECK(build->getOutputDataTypes(&outT, 1, inI, 1) != 0);
    CHECK(build->getOutputDataTypes(&outT, 1, inF, 3) != 0);
    std::vector<int64_t> const xDims = fwd ? std::vector<int64_t>{-1, 320, 14, 7} : std::vector<int64_t>{-1, 640, 14, 4};
    std::vector<int64_t> const xMax = fwd ? std::vector<int64_t>{8, 320, 14, 7} : std::vector<int64_t>{8, 640, 14, 4};
    std::vector<int64_t> const yDims = fwd ? std::vector<int64_t>{-1, 640, 14, 4} : std::vector<int64_t>{-1, 320, 14, 7};
    std::vector<int64_t> const yMax = fwd ? std::vector<int64_t>{8, 640, 14, 4} : std::vector<int64_t>{8, 320, 14, 7};
    std::vector<DynamicPluginTensorDesc> io{tensor(xDims, DataType::kFLOAT, xMax), tensor(yDims, DataType::kFLOAT, yMax)};
    CHECK(build->supportsFormatCombination(0, io.data(), 1, 1) && build->supportsFormatCombination(1, io.data(), 1, 1));
    io[1].desc.type = DataType::kHALF;
    CHECK(!build->supportsFormatCombination(1, io.data(), 1, 1));
    io[0].desc.type = DataType::kHALF;
    CHECK(build->supportsFormatCombination(0, io.data(), 1, 1) && build->supportsFormatCombination(1, io.data(), 1, 1));
    io[0].desc.type = DataType::kINT8;
    CHECK(!build->supportsFormatCombination(0, io.data(), 1, 1));
    io[0].desc.type = DataType::kFLOAT;
    io[1].desc.type = DataType::kFLOAT;
    io[0].desc.format = TensorFormat::kHWC;
    CHECK(!build->supportsFormatCombination(0, io.data(), 1, 1));
    io[0].desc.format = TensorFormat::kLINEAR;
    CHECK(!build->supportsFormatCombination(2, io.data(), 1, 1));

    // getOutputShapes: the batch passes through, C doubles (RFFT2) or halves (IRFFT2), H and
    // W come from spatial_size; a symbolic C gives an expression, a known one a constant.
    {
        MockExprBuilder eb;
        DimsExprs in[1] = {dimsExprs(eb, fwd ? std::vector<int64_t>{-1, 320, 14, 7} : std::vector<int64_t>{-1, 640, 14, 4})};
        DimsExprs out[1]{};
        CHECK(build->getOutputShapes(in, 1, nullptr, 0, out, 1, eb) == 0);
        CHECK(out[0].nbDims == 4 && out[0].d[0] == in[0].d[0] && !out[0].d[0]->isConstant());
        CHECK(isConst(out[0].d[1], fwd ? 640 : 320) && isConst(out[0].d[2], 14) && isConst(out[0].d[3], fwd ? 4 : 7));
        in[0] = dimsExprs(eb, fwd ? std::vector<int64_t>{2, -1, 14, 7} : std::vector<int64_t>{2, -1, 14, 4});
        CHECK(build->getOutputShapes(in, 1, nullptr, 0, out, 1, eb) == 0);
        auto const* c = static_cast<MockExpr const*>(out[0].d[1]);
        CHECK(c != nullptr && !c->isConstant() && c->first == in[0].d[1] && isConst(c->second, 2)
            && c->op == (fwd ? DimensionOperation::kPROD : DimensionOperation::kFLOOR_DIV));
        CHECK(isConst(out[0].d[0], 2) && isConst(out[0].d[3], fwd ? 4 : 7));
        in[0] = dimsExprs(eb, fwd ? std::vector<int64_t>{2, 3, 14, 6} : std::vector<int64_t>{2, 5, 14, 4});
        CHECK(build->getOutputShapes(in, 1, nullptr, 0, out, 1, eb) != 0); // W != spatial_size / odd planar C
        CHECK(build->getOutputShapes(in, 1, nullptr, 1, out, 1, eb) != 0); // shape inputs: none expected
    }

    // configurePlugin and the workspace for batch 8: [fp32 planes | spectra | cuFFT work].
    CHECK(build->configurePlugin(io.data(), 1, io.data() + 1, 1) == 0);
    size_t const buffers = size_t{8} * 320 * 14 * 7 * 4 + size_t{8} * 320 * 14 * 4 * 8; // both multiples of 256
    size_t const ws = build->getWorkspaceSize(io.data(), 1, io.data() + 1, 1);
    CHECK(ws >= buffers && (ws - buffers) % kWorkspaceAlignment == 0 && plugin->workTable().size() == 4);
    std::printf("%s getWorkspaceSize on this host: %zu bytes (buffers %zu)\n", op.c_str(), ws, buffers);
    std::vector<DynamicPluginTensorDesc> badIo = io;
    badIo[0] = tensor(fwd ? std::vector<int64_t>{-1, 320, 14, 6} : std::vector<int64_t>{-1, 640, 14, 7}, DataType::kFLOAT,
        fwd ? std::vector<int64_t>{8, 320, 14, 6} : std::vector<int64_t>{8, 640, 14, 7});
    CHECK(build->configurePlugin(badIo.data(), 1, badIo.data() + 1, 1) != 0); // W does not match spatial_size
    if (!fwd)
    {
        badIo[0] = tensor({-1, 641, 14, 4}, DataType::kFLOAT, {8, 641, 14, 4});
        CHECK(build->configurePlugin(badIo.data(), 1, badIo.data() + 1, 1) != 0); // odd channels: not planar
    }
    badIo = io;
    badIo[1].desc.type = DataType::kHALF;
    CHECK(build->configurePlugin(badIo.data(), 1, badIo.data() + 1, 1) != 0);

    // Serialised fields -> createPlugin(kRUNTIME): same direction, attributes and work table.
    PluginFieldCollection const* ser = rt->getFieldsToSerialize();
    CHECK(ser != nullptr && ser->nbFields == 2 && std::string(ser->fields[0].name) == "spatial_size"
        && std::string(ser->fields[1].name) == kFieldWorkTable && ser->fields[1].length == 4);
    IPluginV3* restored = creator->createPlugin("aff_stage3", ser, TensorRTPhase::kRUNTIME);
    CHECK(restored != nullptr);
    if (restored != nullptr)
    {
        auto const* r = static_cast<SpectralPlugin const*>(restored);
        CHECK(r->direction() == dir && r->attributes() == plugin->attributes() && r->workTable() == plugin->workTable());
        delete restored;
    }
    std::vector<PluginField> withTable(ser->fields, ser->fields + ser->nbFields);
    int64_t const badTable[2] = {256, -1};
    withTable[1] = PluginField{kFieldWorkTable, badTable, PluginFieldType::kINT64, 2};
    PluginFieldCollection badTableFc{2, withTable.data()};
    CHECK(creator->createPlugin("t", &badTableFc, TensorRTPhase::kRUNTIME) == nullptr);

    // clone copies a configured state (as onShapeChange leaves it, batch 3 fp16); validity
    // needs the clone's own cuFFT plans, so it only holds where a GPU is present.
    {
        auto* src = static_cast<SpectralPlugin*>(creator->createPlugin("configured", &fc, TensorRTPhase::kRUNTIME));
        CHECK(src != nullptr);
        if (src != nullptr)
        {
            SpectralPlugin::RuntimeState st;
            int64_t const xd[4] = {3, fwd ? 320 : 640, 14, fwd ? 7 : 4};
            CHECK_STATUS_OK(planSpectralGeometry(dir, src->attributes(), xd, st.geom));
            std::copy(xd, xd + 4, st.xDims);
            st.io = IoType::kFloat16;
            st.grantedBytes = 4242;
            st.valid = true;
            KernelResult const adopted = src->adoptRuntimeState(st);
            src->setWorkTable({512, 1024});
            auto* cc = static_cast<SpectralPlugin*>(src->clone());
            CHECK(cc != nullptr);
            if (cc != nullptr)
            {
                SpectralPlugin::RuntimeState const got = cc->runtimeState();
                CHECK(cc->direction() == dir && got.geom.channels == 320 && got.geom.cols == 7 && got.geom.specCols == 4
                    && got.geom.scale == st.geom.scale && std::equal(xd, xd + 4, got.xDims));
                CHECK(got.io == IoType::kFloat16 && got.grantedBytes == 4242);
                CHECK(got.valid == adopted.ok() && got.valid == src->configured());
                CHECK(cc->workTable() == (std::vector<int64_t>{512, 1024}));
            }
            delete cc;
            delete src;
        }
    }

    // Runtime entry points: errors go to the context's recorder, no crash.
    MockRecorder recorder;
    MockContext ctx(&recorder);
    IPluginV3* attached = rt->attachToContext(&ctx);
    CHECK(attached != nullptr);
    if (attached != nullptr)
    {
        auto* art = static_cast<IPluginV3OneRuntime*>(attached->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
        PluginTensorDesc in[1] = {io[0].desc};
        PluginTensorDesc out[1] = {io[1].desc};
        in[0].dims.d[0] = 2;
        out[0].dims.d[0] = 2;
        void const* ins[1] = {nullptr};
        void* outs[1] = {nullptr};
        CHECK(art->enqueue(in, out, ins, outs, nullptr, nullptr) != 0);
        CHECK(recorder.getNbErrors() >= 1);
        int32_t const before = recorder.getNbErrors();
        PluginTensorDesc badOut[1] = {out[0]};
        badOut[0].dims.d[1] += 2; // Y's channel count must follow the shape rule
        CHECK(art->onShapeChange(in, 1, badOut, 1) != 0);
        CHECK(recorder.getNbErrors() == before + 1);
        int32_t const rc = art->onShapeChange(in, 1, out, 1);
        CHECK(haveGpuHost() ? rc == 0 : (rc != 0 && recorder.getNbErrors() == before + 2));
        CHECK(static_cast<SpectralPlugin const*>(attached)->configured() == (rc == 0));
        std::printf("%s onShapeChange on this host: rc=%d (%s)\n", op.c_str(), rc,
            recorder.errors.empty() ? "" : recorder.errors.back().c_str());
        delete attached;
    }
    delete p;
}

} // namespace

// The mock TensorRT runtime symbols the plugin library imports.
extern "C" IPluginRegistry* getPluginRegistry() noexcept
{
    return &registry();
}
extern "C" ILogger* getLogger() noexcept
{
    return &logger();
}

int main()
{
    // 1. Static registration happened at load, under namespace "hyena": all three creators.
    CHECK(registry().creators.size() == 3);
    CHECK(registry().namespaces.size() == 3
        && std::all_of(registry().namespaces.begin(), registry().namespaces.end(),
            [](std::string const& n) { return n == "hyena"; }));
    auto* creator = static_cast<IPluginCreatorV3One*>(registry().getCreator("FFTConv", "1", "hyena"));
    auto* rfft2 = static_cast<IPluginCreatorV3One*>(registry().getCreator("RFFT2", "1", "hyena"));
    auto* irfft2 = static_cast<IPluginCreatorV3One*>(registry().getCreator("IRFFT2", "1", "hyena"));
    CHECK(creator != nullptr && rfft2 != nullptr && irfft2 != nullptr);
    if (creator == nullptr || rfft2 == nullptr || irfft2 == nullptr)
    {
        return 1;
    }
    CHECK(std::string(creator->getInterfaceInfo().kind) == "PLUGIN CREATOR_V3ONE");
    CHECK(registry().getCreator("RFFT2", "2", "hyena") == nullptr && registry().getCreator("RFFT2", "1", "") == nullptr);

    // 2. loadLibrary hand-over: getCreators() deregisters the static registrations so that
    //    the registry's own registerCreator of the returned creators succeeds.
    int32_t nb = 0;
    IPluginCreatorInterface* const* list = getCreators(nb);
    CHECK(nb == 3 && list != nullptr && list[0] == creator && list[1] == rfft2 && list[2] == irfft2);
    CHECK(registry().creators.empty());
    for (int32_t i = 0; list != nullptr && i < nb; ++i)
    {
        CHECK(registry().registerCreator(*list[i], "hyena")); // what loadLibrary does
    }
    CHECK(registry().creators.size() == 3);
    IPluginCreatorInterface* const* again = getCreators(nb); // idempotent, no second deregistration
    CHECK(nb == 3 && again[0] == creator && registry().creators.size() == 3);

    // 3. getFieldNames: what the ONNX parser reads from the node.
    PluginFieldCollection const* names = creator->getFieldNames();
    CHECK(names != nullptr && names->nbFields == 4);
    CHECK(std::string(names->fields[0].name) == "mode" && names->fields[0].type == PluginFieldType::kCHAR);
    CHECK(std::string(names->fields[1].name) == "kernel_size" && names->fields[1].type == PluginFieldType::kINT32);
    CHECK(std::string(names->fields[2].name) == "fft_size" && names->fields[2].type == PluginFieldType::kINT32);
    CHECK(std::string(names->fields[3].name) == "spatial_size" && names->fields[3].type == PluginFieldType::kINT32);

    // 4. createPlugin with parser-style fields (string with its NUL, int lists).
    char const mode2d[] = "2d";
    int32_t const ks[2] = {111, 111};
    int32_t const fs[2] = {112, 112};
    std::vector<PluginField> fields{PluginField{"mode", mode2d, PluginFieldType::kCHAR, 3},
        PluginField{"kernel_size", ks, PluginFieldType::kINT32, 2},
        PluginField{"fft_size", fs, PluginFieldType::kINT32, 2}};
    PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
    IPluginV3* p3 = creator->createPlugin("hpx_stage0", &fc, TensorRTPhase::kBUILD);
    CHECK(p3 != nullptr);
    if (p3 == nullptr)
    {
        return 1;
    }
    auto* core = static_cast<IPluginV3OneCore*>(p3->getCapabilityInterface(PluginCapabilityType::kCORE));
    auto* build = static_cast<IPluginV3OneBuild*>(p3->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* rt = static_cast<IPluginV3OneRuntime*>(p3->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    CHECK(core != nullptr && build != nullptr && rt != nullptr);
    CHECK(std::string(p3->getInterfaceInfo().kind) == "PLUGIN");
    CHECK(std::string(core->getInterfaceInfo().kind) == "PLUGIN_V3ONE_CORE");
    CHECK(std::string(build->getInterfaceInfo().kind) == "PLUGIN_V3ONE_BUILD");
    CHECK(std::string(rt->getInterfaceInfo().kind) == "PLUGIN_V3ONE_RUNTIME");
    CHECK(std::string(core->getPluginName()) == "FFTConv" && std::string(core->getPluginVersion()) == "1"
        && std::string(core->getPluginNamespace()) == "hyena");
    CHECK(build->getNbOutputs() == 1);

    // Bad fields -> nullptr, error logged, nothing thrown.
    int const logged = logger().nbErrorsOrWarnings;
    char const mode3d[] = "3d";
    std::vector<PluginField> bad = fields;
    bad[0] = PluginField{"mode", mode3d, PluginFieldType::kCHAR, 3};
    PluginFieldCollection badFc{3, bad.data()};
    CHECK(creator->createPlugin("bad", &badFc, TensorRTPhase::kBUILD) == nullptr);
    PluginFieldCollection missingFc{2, fields.data()};
    CHECK(creator->createPlugin("missing", &missingFc, TensorRTPhase::kBUILD) == nullptr);
    int32_t const tooSmall[2] = {100, 112};
    bad = fields;
    bad[2] = PluginField{"fft_size", tooSmall, PluginFieldType::kINT32, 2};
    PluginFieldCollection smallFc{3, bad.data()};
    CHECK(creator->createPlugin("small", &smallFc, TensorRTPhase::kBUILD) == nullptr); // fft < kernel
    CHECK(creator->createPlugin("null", nullptr, TensorRTPhase::kBUILD) == nullptr);
    CHECK(logger().nbErrorsOrWarnings >= logged + 4);

    // 5. Output types and formats.
    DataType outT{};
    DataType inF[3] = {DataType::kFLOAT, DataType::kFLOAT, DataType::kFLOAT};
    DataType inH[3] = {DataType::kHALF, DataType::kFLOAT, DataType::kFLOAT};
    DataType inI[3] = {DataType::kINT32, DataType::kFLOAT, DataType::kFLOAT};
    CHECK(build->getOutputDataTypes(&outT, 1, inF, 3) == 0 && outT == DataType::kFLOAT);
    CHECK(build->getOutputDataTypes(&outT, 1, inH, 3) == 0 && outT == DataType::kHALF);
    CHECK(build->getOutputDataTypes(&outT, 1, inI, 3) != 0);
    CHECK(build->getOutputDataTypes(&outT, 1, inF, 2) != 0);

    std::vector<DynamicPluginTensorDesc> io{tensor({-1, 64, 56, 56}, DataType::kFLOAT, {8, 64, 56, 56}),
        tensor({64, 112, 57, 2}, DataType::kFLOAT), tensor({64}, DataType::kFLOAT),
        tensor({-1, 64, 56, 56}, DataType::kFLOAT, {8, 64, 56, 56})};
    CHECK(build->supportsFormatCombination(0, io.data(), 3, 1));
    CHECK(build->supportsFormatCombination(1, io.data(), 3, 1));
    CHECK(build->supportsFormatCombination(2, io.data(), 3, 1));
    CHECK(build->supportsFormatCombination(3, io.data(), 3, 1));
    io[3].desc.type = DataType::kHALF; // Y must match X
    CHECK(!build->supportsFormatCombination(3, io.data(), 3, 1));
    io[0].desc.type = DataType::kHALF;
    CHECK(build->supportsFormatCombination(0, io.data(), 3, 1) && build->supportsFormatCombination(3, io.data(), 3, 1));
    io[1].desc.type = DataType::kHALF; // Kf stays fp32
    CHECK(!build->supportsFormatCombination(1, io.data(), 3, 1));
    io[1].desc.type = DataType::kFLOAT;
    io[0].desc.type = DataType::kINT8;
    CHECK(!build->supportsFormatCombination(0, io.data(), 3, 1));
    io[0].desc.type = DataType::kFLOAT;
    io[3].desc.type = DataType::kFLOAT;
    io[0].desc.format = TensorFormat::kHWC;
    CHECK(!build->supportsFormatCombination(0, io.data(), 3, 1));
    io[0].desc.format = TensorFormat::kLINEAR;
    CHECK(!build->supportsFormatCombination(4, io.data(), 3, 1));

    // 6. configurePlugin and the workspace for the profile's largest batch.
    CHECK(build->configurePlugin(io.data(), 3, io.data() + 3, 1) == 0);
    // Buffers for batch 8 + the cuFFT work area of batch levels 1, 2, 4, 8 (cufftGetSizeMany;
    // without a GPU that sizing fails, is reported, and nothing is reserved for it).
    size_t const buffers = size_t{8} * 64 * 112 * 112 * 4 + size_t{8} * 64 * 112 * 57 * 8;
    size_t const ws = build->getWorkspaceSize(io.data(), 3, io.data() + 3, 1);
    CHECK(ws >= buffers && (ws - buffers) % kWorkspaceAlignment == 0);
    auto const* p3plugin = static_cast<FFTConvPlugin const*>(p3);
    CHECK(p3plugin->workTable().size() == 4);
    std::printf("getWorkspaceSize on this host: %zu bytes (buffers %zu + cuFFT work area %zu)\n", ws, buffers,
        ws - buffers);
    std::vector<DynamicPluginTensorDesc> badIo = io;
    badIo[1] = tensor({32, 112, 57, 2}, DataType::kFLOAT); // Kf for another C
    CHECK(build->configurePlugin(badIo.data(), 3, badIo.data() + 3, 1) != 0);
    badIo = io;
    badIo[0] = tensor({-1, 64, 56, 56}, DataType::kFLOAT, {8, 64, 60, 56}); // max H breaks alias-free rule
    CHECK(build->configurePlugin(badIo.data(), 3, badIo.data() + 3, 1) != 0);
    badIo = io;
    badIo[2] = tensor({63}, DataType::kFLOAT);
    CHECK(build->configurePlugin(badIo.data(), 3, badIo.data() + 3, 1) != 0);

    // 7. Serialised fields -> createPlugin(kRUNTIME) gives the same attributes.
    PluginFieldCollection const* ser = rt->getFieldsToSerialize();
    CHECK(ser != nullptr && ser->nbFields == 5); // + the cuFFT work table
    CHECK(ser != nullptr && std::string(ser->fields[4].name) == kFieldWorkTable
        && ser->fields[4].type == PluginFieldType::kINT64 && ser->fields[4].length == 4);
    IPluginV3* restored = creator->createPlugin("hpx_stage0", ser, TensorRTPhase::kRUNTIME);
    CHECK(restored != nullptr);
    if (restored != nullptr)
    {
        CHECK(static_cast<FFTConvPlugin*>(restored)->attributes()
            == static_cast<FFTConvPlugin*>(p3)->attributes());
        CHECK(static_cast<FFTConvPlugin*>(restored)->workTable() == p3plugin->workTable());
        delete restored;
    }
    // Only the state blob (as an engine might carry it) is enough; a corrupt blob is refused.
    std::vector<PluginField> stateOnly;
    for (int32_t i = 0; i < ser->nbFields; ++i)
    {
        if (std::string(ser->fields[i].name) == kFieldState)
        {
            stateOnly.push_back(ser->fields[i]);
        }
    }
    CHECK(stateOnly.size() == 1);
    PluginFieldCollection stateFc{1, stateOnly.data()};
    IPluginV3* fromState = creator->createPlugin("s", &stateFc, TensorRTPhase::kRUNTIME);
    CHECK(fromState != nullptr);
    delete fromState;
    std::vector<int8_t> corrupt(static_cast<int8_t const*>(stateOnly[0].data),
        static_cast<int8_t const*>(stateOnly[0].data) + stateOnly[0].length);
    corrupt[corrupt.size() / 2] ^= 1;
    stateOnly[0].data = corrupt.data();
    CHECK(creator->createPlugin("s", &stateFc, TensorRTPhase::kRUNTIME) == nullptr);
    // A work table with a negative entry is refused.
    std::vector<PluginField> withTable(ser->fields, ser->fields + ser->nbFields);
    int64_t const badTable[2] = {256, -1};
    withTable[4] = PluginField{kFieldWorkTable, badTable, PluginFieldType::kINT64, 2};
    PluginFieldCollection badTableFc{static_cast<int32_t>(withTable.size()), withTable.data()};
    CHECK(creator->createPlugin("t", &badTableFc, TensorRTPhase::kRUNTIME) == nullptr);

    // 8. clone / attachToContext copy the configured state; runtime errors go to the
    //    context's recorder.
    IPluginV3* cl = p3->clone();
    CHECK(cl != nullptr);
    if (cl != nullptr)
    {
        auto const* c = static_cast<FFTConvPlugin const*>(cl);
        CHECK(c->attributes() == p3plugin->attributes() && c->workTable() == p3plugin->workTable());
        CHECK(!c->configured() && !p3plugin->configured());
    }
    delete cl;
    {
        // A configured state (as onShapeChange leaves it: batch 2 of the 64x56x56 fp16 layer)
        // is copied by clone(). Validity needs the clone's own cuFFT plans, so it only holds
        // where a GPU is present; everything else is copied on any host.
        auto* src = static_cast<FFTConvPlugin*>(creator->createPlugin("configured", &fc, TensorRTPhase::kRUNTIME));
        CHECK(src != nullptr);
        if (src != nullptr)
        {
            FFTConvPlugin::RuntimeState st;
            int64_t const xd[4] = {2, 64, 56, 56};
            CHECK_STATUS_OK(planGeometry(src->attributes(), xd, st.geom));
            std::copy(xd, xd + 4, st.xDims);
            st.io = IoType::kFloat16;
            st.grantedBytes = 123456;
            st.valid = true;
            KernelResult const adopted = src->adoptRuntimeState(st);
            src->setWorkTable({512, 1024});
            auto* cc = static_cast<FFTConvPlugin*>(src->clone());
            CHECK(cc != nullptr);
            if (cc != nullptr)
            {
                FFTConvPlugin::RuntimeState const got = cc->runtimeState();
                CHECK(got.geom.batch == 2 && got.geom.channels == 64 && got.geom.fftRows == 112
                    && got.geom.cropCol == 55 && got.geom.scale == st.geom.scale);
                CHECK(std::equal(xd, xd + 4, got.xDims));
                CHECK(got.io == IoType::kFloat16 && got.grantedBytes == 123456);
                CHECK(got.valid == adopted.ok() && got.valid == src->configured());
                CHECK(cc->workTable() == (std::vector<int64_t>{512, 1024}));
                std::printf("clone of a configured plugin on this host: valid=%d\n", got.valid ? 1 : 0);
            }
            delete cc;
            delete src;
        }
    }
    MockRecorder recorder;
    MockContext ctx(&recorder);
    IPluginV3* attached = rt->attachToContext(&ctx);
    CHECK(attached != nullptr);
    if (attached != nullptr)
    {
        auto* art = static_cast<IPluginV3OneRuntime*>(attached->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
        PluginTensorDesc in[3] = {io[0].desc, io[1].desc, io[2].desc};
        PluginTensorDesc out[1] = {io[3].desc};
        in[0].dims.d[0] = 2;
        out[0].dims.d[0] = 2;
        // enqueue before onShapeChange: refused with an error, no crash.
        void const* ins[3] = {nullptr, nullptr, nullptr};
        void* outs[1] = {nullptr};
        CHECK(art->enqueue(in, out, ins, outs, nullptr, nullptr) != 0);
        CHECK(recorder.getNbErrors() >= 1);
        // onShapeChange: bad shapes are refused before touching CUDA.
        PluginTensorDesc badIn[3] = {in[0], in[1], in[2]};
        badIn[2].dims.d[0] = 63;
        int32_t const before = recorder.getNbErrors();
        CHECK(art->onShapeChange(badIn, 3, out, 1) != 0);
        CHECK(recorder.getNbErrors() == before + 1);
        // With good shapes it makes cuFFT plans: on a host without a GPU that fails cleanly.
        int32_t const rc = art->onShapeChange(in, 3, out, 1);
        int deviceCount = 0;
        bool const haveGpu = cudaGetDeviceCount(&deviceCount) == cudaSuccess && deviceCount > 0;
        CHECK(haveGpu ? rc == 0 : (rc != 0 && recorder.getNbErrors() == before + 2));
        std::printf("onShapeChange on this host: rc=%d (%s)\n", rc,
            recorder.errors.empty() ? "" : recorder.errors.back().c_str());
        auto const* ap = static_cast<FFTConvPlugin const*>(attached);
        CHECK(ap->configured() == (rc == 0));
        if (rc == 0)
        {
            // A clone of a configured plugin is configured the same way (with its own plans).
            IPluginV3* cc = attached->clone();
            auto const* c = static_cast<FFTConvPlugin const*>(cc);
            CHECK(c != nullptr && c->configured() && c->runtimeState().io == ap->runtimeState().io
                && c->runtimeState().geom.batch == ap->runtimeState().geom.batch
                && c->runtimeState().grantedBytes == ap->runtimeState().grantedBytes);
            delete cc;
        }
        delete attached;
    }
    delete p3;

    checkCircular(creator);
    checkSpectral(rfft2, Direction::kForward);
    checkSpectral(irfft2, Direction::kInverse);

    // The exported plan counter is the kernels' counter (no plan could be made without a GPU).
    CHECK(hyena_fftconv_cufft_plans_created() == cufftPlansCreated());
    CHECK(haveGpuHost() || hyena_fftconv_cufft_plans_created() == 0);

    if (gFailures != 0)
    {
        std::fprintf(stderr, "fftconv_plugin_glue_test: %d of %d checks FAILED\n", gFailures, gChecks);
        return 1;
    }
    std::printf("fftconv_plugin_glue_test: all %d checks passed (TensorRT %d.%d headers)\n", gChecks,
        NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR);
    return 0;
}
