"""Checkpoints: the published key layout (written out by hand from the reference module
tree, independently of our modules) loads strictly; file formats, wrappers, errors; Hpx
filter resampling to a larger input size."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hyena_serve.layers import centre_distance
from hyena_serve.models import create_model
from hyena_serve.models.checkpoint import (
    CheckpointMismatchError,
    load_checkpoint,
    load_state_dict,
    resample_filters,
    save_checkpoint,
)

DIMS = (64, 128, 320, 512)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _backbone_layout(mixer_keys, num_classes=1000):
    """Published keys and shapes of an S4 (one block per stage) MetaFormer at 224."""
    keys = {"downsample_layers.0.conv.weight": (64, 3, 7, 7), "downsample_layers.0.conv.bias": (64,),
            "downsample_layers.0.post_norm.weight": (64,)}
    for i in range(1, 4):
        keys[f"downsample_layers.{i}.pre_norm.weight"] = (DIMS[i - 1],)
        keys[f"downsample_layers.{i}.conv.weight"] = (DIMS[i], DIMS[i - 1], 3, 3)
        keys[f"downsample_layers.{i}.conv.bias"] = (DIMS[i],)
    for i, c in enumerate(DIMS):
        p = f"stages.{i}.0."
        keys[p + "norm1.weight"] = (c,)
        keys.update({p + "token_mixer." + k: v for k, v in mixer_keys(i, c).items()})
        keys.update({p + "norm2.weight": (c,), p + "mlp.fc1.weight": (4 * c, c), p + "mlp.act.scale": (1,),
                     p + "mlp.act.bias": (1,), p + "mlp.fc2.weight": (c, 4 * c)})
        if i >= 2:
            keys[p + "res_scale1.scale"] = (c,)
            keys[p + "res_scale2.scale"] = (c,)
    keys.update({"norm.weight": (512,), "norm.bias": (512,), "head.fc1.weight": (2048, 512),
                 "head.fc1.bias": (2048,), "head.norm.weight": (2048,), "head.norm.bias": (2048,),
                 "head.fc2.weight": (num_classes, 2048), "head.fc2.bias": (num_classes,)})
    return keys


def _hpx_keys(layernorm):
    def keys(i, c):
        k, e = (111, 55, 27, 13)[i], (32, 32, 48, 64)[i]
        o = 2 * e
        out = {"pointwise_conv.weight": (3 * c, c, 1, 1), "pointwise_conv.bias": (3 * c,),
               "depthwise_conv.weight": (3 * c, 1, 5, 5), "depthwise_conv.bias": (3 * c,),
               "long_conv.z": (1, e, k, k), "long_conv.deltas": (1, c, 1, 1), "long_conv.distance_map": (1, 1, k, k),
               "long_conv.shift": (1, c, 1, 1), "long_conv.bias": (1, c, 1, 1),
               "long_conv.implicit_filter.0.weight": (o, e, 1, 1), "long_conv.implicit_filter.0.bias": (o,),
               "long_conv.implicit_filter.1.freq": (1, o, 1, 1), "long_conv.implicit_filter.2.weight": (o, o, 1, 1),
               "long_conv.implicit_filter.2.bias": (o,), "long_conv.implicit_filter.3.freq": (1, o, 1, 1),
               "long_conv.implicit_filter.4.weight": (c, o, 1, 1), "out_proj.bias": (c,)}
        if layernorm:
            out.update({"qk_norm.weight": (c,), "out_norm.weight": (c,), "out_proj.weight": (c, c)})
        else:
            out["out_proj.weight"] = (c, c, 1, 1)
        return out
    return keys


def _hb_keys(i, c):
    k, e, o = (6271, 1567, 391, 97)[i], (33, 33, 49, 65)[i], (64, 64, 96, 128)[i]
    f = "filter_fn."
    return {"in_proj.weight": (3 * c, c), "in_proj.bias": (3 * c,), "short_filter.weight": (3 * c, 1, 3),
            "short_filter.bias": (3 * c,), f + "bias": (c,), f + "pos_emb.z": (1, k, e), f + "pos_emb.t": (1, k, 1),
            f + "implicit_filter.0.weight": (o, e), f + "implicit_filter.0.bias": (o,),
            f + "implicit_filter.1.freq": (1, o), f + "implicit_filter.2.weight": (o, o),
            f + "implicit_filter.2.bias": (o,), f + "implicit_filter.3.freq": (1, o),
            f + "implicit_filter.4.weight": (o, o), f + "implicit_filter.4.bias": (o,),
            f + "implicit_filter.5.freq": (1, o), f + "implicit_filter.6.weight": (c, o),
            f + "modulation.deltas": (1, 1, c), "out_proj.weight": (c, c), "out_proj.bias": (c,)}


def _attn_keys(c):
    return {"qkv.weight": (3 * c, c), "proj.weight": (c, c)}


def _sepconv_keys(c):
    return {"pwconv1.weight": (2 * c, c), "act1.scale": (1,), "act1.bias": (1,), "dwconv.weight": (2 * c, 1, 7, 7),
            "pwconv2.weight": (c, 2 * c)}


LAYOUTS = {
    "hpx_former_s4": _backbone_layout(_hpx_keys(True)),
    "hb_former_s4": _backbone_layout(_hb_keys),
    "hpx_a_former_s4": _backbone_layout(lambda i, c: _hpx_keys(False)(i, c) if i < 2 else _attn_keys(c)),
    "c_hpx_former_s4": _backbone_layout(lambda i, c: _sepconv_keys(c) if i < 2 else _hpx_keys(False)(i, c)),
    "hb_a_former_s4": _backbone_layout(lambda i, c: _hb_keys(i, c) if i < 2 else _attn_keys(c)),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_published_layout_loads_strictly(name, tmp_path):
    layout = LAYOUTS[name]
    model = create_model(name)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == layout
    published = {k: torch.randn(shape) for k, shape in layout.items()}
    path = tmp_path / "pytorch_model.bin"
    torch.save({"state_dict": published, "epoch": 3}, path)  # a training-script wrapper
    load_checkpoint(model, path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, published[k]), k


@pytest.fixture(scope="module")
def tiny():
    return create_model("hpx_former_s4", num_classes=10, img_size=32, dims=(32, 64, 96, 128)).eval()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".pt", ".bin"])
def test_round_trip(tiny, tmp_path, suffix):
    path = save_checkpoint(tiny, tmp_path / f"w{suffix}")
    other = create_model("hpx_former_s4", num_classes=10, img_size=32, dims=(32, 64, 96, 128)).eval()
    load_checkpoint(other, path)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(other(x), tiny(x), rtol=0, atol=0)


@pytest.mark.parametrize("wrap", [lambda s: {"model": s}, lambda s: {"module." + k: v for k, v in s.items()},
                                  lambda s: {"checkpoint": 1, "state_dict": {"model": s}}])
def test_wrappers(tiny, tmp_path, wrap):
    path = tmp_path / "w.pth"
    torch.save(wrap(tiny.state_dict()), path)
    assert load_state_dict(path).keys() == tiny.state_dict().keys()


def test_missing_file_names_path(tiny, tmp_path):
    path = tmp_path / "nowhere.safetensors"
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        load_checkpoint(tiny, path)


def test_key_and_shape_mismatches_are_listed(tiny, tmp_path):
    state = tiny.state_dict()
    del state["norm.weight"]
    state["extra.weight"] = torch.zeros(1)
    state["head.fc2.bias"] = torch.zeros(3)
    path = save_checkpoint(state, tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(tiny, path)
    msg = str(err.value)
    assert "bad.safetensors" in msg and "missing keys (1): norm.weight" in msg
    assert "unexpected keys (1): extra.weight" in msg and "head.fc2.bias: checkpoint (3,) vs model (10,)" in msg
    with pytest.raises(CheckpointMismatchError, match="shape mismatches"):
        load_checkpoint(tiny, path, strict=False)


def test_create_model_with_checkpoint(tiny, tmp_path):
    path = save_checkpoint(tiny, tmp_path / "w.safetensors")
    model = create_model("hpx_former_s4", num_classes=10, img_size=32, dims=(32, 64, 96, 128), checkpoint_path=path)
    assert torch.equal(model.head.fc2.weight, tiny.head.fc2.weight)


def test_resample_hpx_filters_to_larger_input(tiny, tmp_path):
    big = create_model("hpx_former_s4", num_classes=10, img_size=64, dims=(32, 64, 96, 128)).eval()
    with pytest.raises(CheckpointMismatchError, match="long_conv.z"):
        load_checkpoint(big, save_checkpoint(tiny, tmp_path / "w.pth"))
    state = resample_filters(tiny.state_dict(), big)
    big.load_state_dict(state, strict=True)
    old_z = tiny.stages[0][0].token_mixer.long_conv.z
    new = big.stages[0][0].token_mixer.long_conv
    assert old_z.shape[-1] == 15 and new.z.shape[-1] == 31
    torch.testing.assert_close(new.z, F.interpolate(old_z, size=(31, 31), mode="bicubic", antialias=True))
    # distances in units of the old filter: the decay stretches with the filter
    torch.testing.assert_close(new.distance_map[0, 0], centre_distance(31, 31) * 15 / 31)
    assert new.distance_map[0, 0, 15, 15] == 0
    for key in ("long_conv.deltas", "pointwise_conv.weight"):
        assert torch.equal(state[f"stages.0.0.token_mixer.{key}"], tiny.state_dict()[f"stages.0.0.token_mixer.{key}"])
    ref = resample_filters(tiny.state_dict(), big, reference_distance_scale=True)
    torch.testing.assert_close(ref["stages.0.0.token_mixer.long_conv.distance_map"][0, 0],
                               centre_distance(31, 31) / (15.5 / 15))
    with torch.no_grad():
        assert torch.isfinite(big(torch.randn(1, 3, 64, 64))).all()
    path = save_checkpoint(tiny, tmp_path / "w.safetensors")
    load_checkpoint(create_model("hpx_former_s4", num_classes=10, img_size=64, dims=(32, 64, 96, 128)), path,
                    resample=True)
