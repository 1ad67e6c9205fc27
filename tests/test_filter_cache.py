"""The eval-time Kf cache (hit, invalidation, no autograd state) and frozen filters
(freeze_filters / unfreeze_filters / hyena_plans, export-friendliness)."""

from __future__ import annotations

import copy

import pytest
import torch

from hyena_serve.contract import MODE_1D_BIDIR, MODE_2D
from hyena_serve.models import create_model
from hyena_serve.models.frozen import freeze_filters, hyena_mixers, hyena_plans, unfreeze_filters

NAMES = ["hpx_former_s4", "hb_former_s4"]
RES = 32


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(name):
    return create_model(name, num_classes=5, img_size=RES, dims=(32, 64, 64, 96))


def _fresh(model, x):
    """The output with every filter recomputed (train mode: no dropout/drop-path here)."""
    was = model.training
    with torch.no_grad():
        y = model.train()(x)
    model.train(was)
    return y


def _count_filter_calls(model):
    calls = []
    for _, mixer in hyena_mixers(model):
        mixer.filter_module.implicit_filter.register_forward_hook(lambda *a: calls.append(1))
    return calls


@pytest.mark.parametrize("name", NAMES)
def test_cache_hit_and_equality(name):
    model = _model(name).eval()
    calls = _count_filter_calls(model)
    x = torch.randn(2, 3, RES, RES)
    with torch.no_grad():
        y1 = model(x)
        n_first = len(calls)
        y2 = model(x)
    assert n_first == len(hyena_mixers(model)) and len(calls) == n_first  # second forward: all hits
    torch.testing.assert_close(y1, y2, rtol=0, atol=0)
    torch.testing.assert_close(y1, _fresh(model, x), rtol=1e-5, atol=1e-5)
    before = len(calls)
    model.train()
    model(x)
    model(x)
    assert len(calls) == before + 2 * n_first  # training recomputes every forward


@pytest.mark.parametrize("name", NAMES)
def test_cache_holds_no_autograd_state(name):
    model = _model(name).eval()
    x = torch.randn(1, 3, RES, RES, requires_grad=True)
    with torch.inference_mode():
        model(x.detach())  # fill the cache under inference mode ...
    y = model(x)  # ... and use it with autograd on
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    for _, mixer in hyena_mixers(model):
        kf = mixer._kf_cache[1]
        assert not kf.requires_grad and kf.grad_fn is None and not kf.is_inference()
        assert all(p.grad is None for p in mixer.filter_module.implicit_filter.parameters())
    assert not any("kf" in k for k in model.state_dict())


@pytest.mark.parametrize("name", NAMES)
def test_train_invalidates(name):
    model = _model(name).eval()
    with torch.no_grad():
        model(torch.randn(1, 3, RES, RES))
    assert all(m._kf_cache is not None for _, m in hyena_mixers(model))
    model.train()
    assert all(m._kf_cache is None for _, m in hyena_mixers(model))


@pytest.mark.parametrize("opt_cls", [torch.optim.SGD, torch.optim.AdamW])
@pytest.mark.parametrize("name", NAMES)
def test_optimizer_step_invalidates(name, opt_cls):
    model = _model(name)
    x = torch.randn(2, 3, RES, RES)
    opt = opt_cls(model.parameters(), lr=0.05)
    for _ in range(2):  # train, then serve, alternating: eval after a step must not be stale
        model.train()
        opt.zero_grad()
        model(x).square().mean().backward()
        model.eval()
        with torch.no_grad():
            before = model(x)
        opt.step()  # in eval mode: no train() call in between
        with torch.no_grad():
            after = model(x)
        assert not torch.allclose(before, after)
        torch.testing.assert_close(after, _fresh(model, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_load_state_dict_invalidates(name):
    model, other = _model(name).eval(), _model(name).eval()
    x = torch.randn(2, 3, RES, RES)
    with torch.no_grad():
        model(x)
        model.load_state_dict(other.state_dict())
        torch.testing.assert_close(model(x), other(x), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_resolution_change_invalidates(name):
    model = _model(name).eval()
    for res in (RES, 48, RES):
        x = torch.randn(1, 3, res, res)
        with torch.no_grad():
            y = model(x)
        torch.testing.assert_close(y, _fresh(model, x), rtol=1e-5, atol=1e-5)


def test_data_writes_need_explicit_invalidation():
    model = _model("hpx_former_s4").eval()
    x = torch.randn(1, 3, RES, RES)
    with torch.no_grad():
        model(x)
        for _, mixer in hyena_mixers(model):
            mixer.filter_module.shift.data += 1.0  # bypasses the version counter
            mixer.invalidate_filter_cache()
        torch.testing.assert_close(model(x), _fresh(model, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_freeze_filters(name):
    model = _model(name).eval()
    x = torch.randn(2, 3, RES, RES)
    with torch.no_grad():
        expected = model(x)
    keys = set(model.state_dict())
    infos = freeze_filters(model, RES)
    mode = MODE_2D if name.startswith("hpx") else MODE_1D_BIDIR
    assert [i.name for i in infos] == [n for n, _ in hyena_mixers(model)] and len(infos) == 4
    for info, (_, mixer) in zip(infos, hyena_mixers(model)):
        assert info.mode == mode and mixer.frozen_plan == info.plan
        assert mixer.frozen_kf.shape == (info.channels, *info.plan.spectrum_shape, 2)
        assert mixer.frozen_kf.dtype == torch.float32 and mixer.frozen_d.shape == (info.channels,)
        assert not mixer.frozen_kf.requires_grad
    assert set(model.state_dict()) == keys  # non-persistent
    calls = _count_filter_calls(model)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(model.train()(x), expected, rtol=1e-6, atol=1e-6)  # frozen in every mode
    assert not calls
    with pytest.raises(RuntimeError, match=r"frozen for a .* feature map .* unfreeze_filters"):
        model(torch.randn(1, 3, 2 * RES, 2 * RES))
    unfreeze_filters(model)
    assert all(m.frozen_kf is None and m.frozen_plan is None for _, m in hyena_mixers(model))
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 2 * RES, 2 * RES)).shape == (1, 5)


def test_hyena_plans_count_only_hyena_mixers():
    model = create_model("hpx_a_former_s4", img_size=RES, dims=(32, 64, 64, 96), depths=(2, 1, 1, 1))
    infos = hyena_plans(model, 64)
    assert [i.name for i in infos] == ["stages.0.0.token_mixer", "stages.0.1.token_mixer", "stages.1.0.token_mixer"]
    assert [i.plan.spatial for i in infos] == [(16, 16), (16, 16), (8, 8)]
    assert [i.plan.kernel for i in infos] == [(15, 15), (15, 15), (7, 7)]  # built for 32, run at 64
    assert not hyena_plans(create_model("convformer_s4", img_size=RES), RES)
    with pytest.raises(TypeError):
        hyena_plans(torch.nn.Linear(2, 2), RES)


@pytest.mark.parametrize("name", NAMES)
def test_frozen_model_exports_without_filter_network(name):
    model = _model(name).eval()
    freeze_filters(model, RES)
    program = torch.export.export(copy.deepcopy(model), (torch.randn(2, 3, RES, RES),))
    targets = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert sum("hyena.fft_conv" in t for t in targets) == 4
    assert not any("sin" in t.split(".")[-2:][0] for t in targets)  # no implicit-filter network


# -- the key does not trust addresses of freed tensors ---------------------------------------

def _first_mixer(model):
    return hyena_mixers(model)[0][1]


@pytest.mark.parametrize("name", NAMES)
def test_dtype_round_trip_recomputes(name):
    """``.to(bf16).to(fp32)`` rounds the filter weights; the cached Kf of the original
    weights must not be reused even if the allocator hands out the old addresses."""
    model = _model(name).eval()
    x = torch.randn(1, 3, RES, RES)
    with torch.no_grad():
        model(x)
    mixer = _first_mixer(model)
    model.to(torch.bfloat16).to(torch.float32)
    assert mixer._kf_cache is None  # .to() drops the entry
    with torch.no_grad():
        y = model(x)
    torch.testing.assert_close(y, _fresh(model, x), rtol=1e-5, atol=1e-5)


def test_submodule_round_trip_with_reused_addresses_recomputes():
    """``.to()`` on the filter module alone (the mixer's ``_apply`` is not called): the
    pinned storages keep the old addresses taken, so the new tensors get new keys."""
    model = _model("hpx_former_s4").eval()
    x = torch.randn(1, 3, RES, RES)
    with torch.no_grad():
        model(x)
    mixer = _first_mixer(model)
    old_key = mixer._kf_cache[0]
    fm = mixer.filter_module
    for _ in range(5):  # several round trips: plenty of chances for address reuse
        fm.to(torch.bfloat16).to(torch.float32)
    assert mixer._kf_cache is not None and mixer._kf_cache[0] == old_key  # entry still there
    with torch.no_grad():
        y = model(x)
    assert mixer._kf_cache[0] != old_key
    torch.testing.assert_close(y, _fresh(model, x), rtol=1e-5, atol=1e-5)


def test_assign_load_state_dict_recomputes():
    """``load_state_dict(assign=True)`` swaps in new tensors (fresh version counters)."""
    model = _model("hb_former_s4").eval()
    other = _model("hb_former_s4")
    x = torch.randn(1, 3, RES, RES)
    with torch.no_grad():
        model(x)
    state = {k: v.clone() for k, v in other.state_dict().items()}
    model.load_state_dict(state, assign=True)
    model.eval()
    with torch.no_grad():
        y = model(x)
        ref = other.eval()(x)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


def test_cache_pins_storages():
    model = _model("hpx_former_s4").eval()
    with torch.no_grad():
        model(torch.randn(1, 3, RES, RES))
    mixer = _first_mixer(model)
    pins = mixer._kf_cache[2]
    tensors = [*mixer.filter_module.parameters(), *mixer.filter_module.buffers()]
    assert len(pins) == len(tensors)
    assert all(p.data_ptr() == t.untyped_storage().data_ptr() for p, t in zip(pins, tensors))


# -- torch.compile -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("frozen", [True, False])
def test_compile_one_graph_no_recompile(name, frozen):
    """The eval model (frozen or cached filters) traces into one graph (fullgraph: a graph
    break would raise), compiles once for all stages and does not recompile on repeat calls."""
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    model = _model(name).eval()
    if frozen:
        freeze_filters(model, RES)
    x = torch.randn(2, 3, RES, RES)
    with torch.no_grad():
        ref = model(x)
        counter = CompileCounter()
        compiled = torch.compile(model, backend=counter, fullgraph=True, dynamic=False)
        for _ in range(3):
            y = compiled(x)
    assert counter.frame_count == 1
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_round_trip_recomputes():
    model = _model("hpx_former_s4").eval()
    x = torch.randn(1, 3, RES, RES)
    with torch.no_grad():
        model(x)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(1.0)  # same values, new versions: nothing to go stale on its own
        model.cuda()
        for p in _first_mixer(model).filter_module.parameters():
            p.data = p.data + 0.01  # new weights on the GPU ...
        model.cpu()  # ... back on the CPU, fresh tensors that may reuse freed addresses
        y = model(x)
    torch.testing.assert_close(y, _fresh(model, x), rtol=1e-5, atol=1e-5)
