"""python -m hyena_serve.train: tiny real runs, exact resume, schedule, AdamW groups, errors,
and a two-process torchrun (gloo) run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

pytest.importorskip("sklearn")

from hyena_serve.models import create_model  # noqa: E402
from hyena_serve.train import main  # noqa: E402
from hyena_serve.training.checkpoint import load_training_state  # noqa: E402
from hyena_serve.training.data import load_digits_splits, stratified_split  # noqa: E402
from hyena_serve.training.optim import (  # noqa: E402
    WarmupCosine,
    build_optimizer,
    build_scheduler,
    param_groups,
)

REPO = Path(__file__).resolve().parents[1]
TINY_MODEL = {"num_classes": 10, "img_size": 16, "dims": (8, 16, 24, 32)}
# A tiny model at 16 px on 48 samples, batch 16: 3 optimizer steps per epoch.
TINY = ["--img-size", "16", "--dims", "8,16,24,32", "--subset", "48", "--batch-size", "16",
        "--threads", "1", "--no-progress"]


def _run(tmp: Path, *extra: str, capsys=None) -> dict:
    assert main([*TINY, "--out", str(tmp), *extra]) == 0
    if capsys is None:
        return {}
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_short_run_loss_falls_and_writes_artifacts(tmp_path, capsys):
    summary = _run(tmp_path, "--epochs", "4", "--warmup-epochs", "1", "--lr", "3e-3",
                   "--no-augment", "--label-smoothing", "0", capsys=capsys)
    state = load_training_state(tmp_path / "last.pt")
    losses = [h["train_loss"] for h in state["history"]]
    assert len(losses) == 4 and losses[-1] < 0.9 * losses[0], losses
    assert summary["epochs_done"] == 4 and summary["params"] > 0
    assert 0.0 <= summary["final_val_acc"] <= summary["best_val_acc"] <= 1.0
    assert summary["val_samples"] == 48
    # The serving weights load strictly into a freshly built model.
    model = create_model("hpx_former_s4", **TINY_MODEL)
    model.load_state_dict(load_file(str(tmp_path / "model.safetensors")), strict=True)
    assert (tmp_path / "model_best.safetensors").is_file()


def test_resume_continues_exactly(tmp_path, capsys):
    # drop-path and augmentation both draw random numbers, so this also checks the RNG state.
    common = ["--epochs", "3", "--warmup-epochs", "1", "--drop-path", "0.2"]
    _run(tmp_path / "straight", *common)
    _run(tmp_path / "split", *common, "--stop-at-epoch", "1")
    first = load_training_state(tmp_path / "split" / "last.pt")
    assert first["epoch"] == 1
    capsys.readouterr()
    summary = _run(tmp_path / "split", "--resume", str(tmp_path / "split" / "last.pt"), capsys=capsys)
    assert summary["epochs_done"] == 3

    a = load_training_state(tmp_path / "straight" / "last.pt")
    b = load_training_state(tmp_path / "split" / "last.pt")
    assert b["epoch"] == 3
    assert [h["epoch"] for h in b["history"]] == [1, 2, 3]
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    steps = a["optimizer"]["state"][0]["step"]
    assert steps == b["optimizer"]["state"][0]["step"] == 9  # 3 epochs x 3 steps
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 9
    assert a["history"][-1]["val_acc"] == b["history"][-1]["val_acc"]


def test_resume_refuses_conflicting_options(tmp_path, capsys):
    _run(tmp_path, "--epochs", "1")
    capsys.readouterr()
    assert main([*TINY, "--out", str(tmp_path), "--resume", str(tmp_path / "last.pt"), "--lr", "0.5"]) == 2
    assert "--lr=0.5 conflicts with the checkpoint" in capsys.readouterr().err


def test_schedule_warmup_then_cosine_to_floor():
    f = WarmupCosine(warmup_steps=5, total_steps=50, floor=0.01)
    values = [f(s) for s in range(51)]
    warm, decay = values[:5], values[4:]
    assert all(b > a for a, b in zip(warm, warm[1:])) and warm[0] == pytest.approx(0.2)
    assert values[4] == pytest.approx(1.0)
    assert all(b <= a for a, b in zip(decay, decay[1:]))
    assert values[27] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * 22 / 45)))
    assert values[50] == pytest.approx(0.01) and values[49] < 0.012

    # Wired into an optimizer: one scheduler step per optimizer step, ending at min_lr.
    opt = torch.optim.AdamW([nn.Parameter(torch.zeros(2, 2))], lr=1e-2)
    sched = build_scheduler(opt, warmup_steps=5, total_steps=50, min_lr=1e-4)
    lrs = []
    for _ in range(50):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(2e-3) and max(lrs) == pytest.approx(1e-2)
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-4)


def test_adamw_groups_skip_norms_biases_and_scalars():
    model = create_model("hpx_former_s4", **TINY_MODEL)
    groups = param_groups(model, weight_decay=0.05)
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in groups[0]["params"]}
    undecayed = {names[id(p)] for p in groups[1]["params"]}
    assert len(decayed) + len(undecayed) == len(names)
    for name in undecayed:
        # Biases, norm weights, or at most one non-singleton dimension (scalars, per-channel
        # decays/shifts/frequencies, and a filter embedding whose map is 1×1 at this size).
        p = model.get_parameter(name)
        assert name.endswith(".bias") or sum(s > 1 for s in p.shape) <= 1, name
    for name in ("stages.0.0.norm1.weight", "stages.0.0.mlp.act.scale", "stages.0.0.mlp.act.bias",
                 "downsample_layers.0.conv.bias", "stages.0.0.token_mixer.long_conv.deltas",
                 "stages.0.0.token_mixer.long_conv.bias", "norm.weight", "norm.bias"):
        assert name in undecayed, name
    for name in ("downsample_layers.0.conv.weight", "stages.0.0.mlp.fc1.weight",
                 "stages.0.0.token_mixer.long_conv.z", "head.fc2.weight"):
        assert name in decayed, name
    assert all(p.dim() >= 2 for p in groups[0]["params"])
    opt = build_optimizer(model, lr=1e-3, weight_decay=0.05)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]


def test_digits_split_is_stratified_and_deterministic():
    train, val = load_digits_splits(img_size=24, seed=3)
    assert len(train) + len(val) == 1797 and train.images.shape[1:] == (1, 24, 24)
    assert 0.0 <= train.images.min() and train.images.max() <= 1.0
    counts = torch.bincount(val.labels, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # ~20% of each class (174-183 per class)
    labels = train.labels.numpy()
    a, b = stratified_split(labels, 0.2, seed=1), stratified_split(labels, 0.2, seed=1)
    assert all((x == y).all() for x, y in zip(a, b))


def test_amp_bf16_on_cpu_runs(tmp_path, capsys):
    # 32 px, not 16: with a 1×1 map into the last stride-2 downsampling conv, torch 2.13's
    # CPU bf16 conv weight gradient is non-finite in ~20% of calls (an upstream bug).
    summary = _run(tmp_path, "--epochs", "1", "--amp", "--img-size", "32", capsys=capsys)
    assert math.isfinite(summary["final_val_loss"]), summary


def test_clear_errors(tmp_path, capsys):
    assert main([*TINY, "--out", str(tmp_path), "--model", "no_such_model"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'no_such_model'" in err and "hpx_former_s4" in err

    missing = tmp_path / "nope" / "last.pt"
    assert main([*TINY, "--out", str(tmp_path), "--resume", str(missing)]) == 2
    assert f"resume checkpoint not found: {missing}" in capsys.readouterr().err

    assert main([*TINY, "--out", str(tmp_path), "--dims", "8,x"]) == 2
    assert "--dims takes integers" in capsys.readouterr().err

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main([*TINY, "--out", str(blocker / "run")]) == 2
    assert "cannot write to --out" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_processes_gloo(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "hyena_serve.train", *TINY, "--epochs", "1", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1  # only rank 0 reports
    summary = summaries[0]
    assert summary["world_size"] == 2 and summary["val_samples"] == 48  # all-reduced over both shards
    state = load_training_state(out / "last.pt")
    assert state["epoch"] == 1 and len(state["rng"]) == 2
    assert state["optimizer"]["state"][0]["step"] == 3  # 48 samples / global batch 16
