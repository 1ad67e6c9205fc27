"""Train a HyenaPixel-family classifier: ``python -m hyena_serve.train``.

The defaults train a small ``hpx_former_s4`` (dims 32/64/96/128, 0.75M parameters) on
scikit-learn's digits at 32×32 to 98-100% validation accuracy in about three minutes on one
busy CPU core. Run under ``torchrun`` for data
parallelism (gloo on CPU, nccl on CUDA); only rank 0 logs and writes files. Each epoch
writes ``OUT/last.pt`` (resume with ``--resume OUT/last.pt``) and ``OUT/model.safetensors``
(+ ``model_best.safetensors`` and its ``manifest.json``: serve the best epoch with
``hyena-serve serve --weights OUT``); the last stdout line is a JSON summary of the run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from hyena_serve.files import sha256_file
from hyena_serve.manifest import RUN_MANIFEST, Manifest, WeightsInfo, write_manifest
from hyena_serve.preprocess import Preprocessing
from hyena_serve.training import checkpoint as ckpt
from hyena_serve.training.data import DIGITS_LABELS, DIGITS_MEAN, DIGITS_STD, NUM_CLASSES, load_digits_splits
from hyena_serve.training.distributed import (
    DistContext,
    barrier,
    cleanup,
    init_distributed,
    resolve_device,
)
from hyena_serve.training.loop import evaluate, make_sampler, steps_per_epoch, train_one_epoch
from hyena_serve.training.optim import build_optimizer, build_scheduler

#: Options that only affect how this invocation runs, not what it computes; a resumed run
#: takes every other option from the checkpoint.
RUNTIME_OPTIONS = frozenset({"out", "threads", "device", "no_progress", "resume", "stop_at_epoch"})


class TrainError(Exception):
    """A user-facing problem with the arguments or files; reported without a traceback."""


def _int_list(values: list[str], flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for item in values for v in item.split(",") if v)
    except ValueError:
        raise TrainError(f"{flag} takes integers (e.g. 32,64,96,128), got {' '.join(values)!r}") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hyena_serve.train",
                                description="Train a HyenaPixel-family classifier (torchrun for DDP).",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("data")
    g.add_argument("--dataset", choices=["digits"], default="digits",
                   help="scikit-learn's 8×8 digits, upsampled bilinearly to --res")
    g.add_argument("--res", "--img-size", dest="img_size", type=int, default=32, help="input side in pixels")
    g.add_argument("--val-fraction", type=float, default=0.2, help="stratified validation share")
    g.add_argument("--subset", type=int, default=None, metavar="N",
                   help="use at most N train and N val samples (quick runs, tests)")
    g.add_argument("--no-augment", action="store_true", help="disable random affine augmentation")
    g = p.add_argument_group("model")
    g.add_argument("--model", default="hpx_former_s4", help="registered model name")
    g.add_argument("--dims", nargs="+", default=["32,64,96,128"], metavar="D",
                   help="channels per stage, e.g. 32,64,96,128 or 32 64 96 128 (digits-sized); "
                        "'native' keeps the variant's own widths")
    g.add_argument("--depths", nargs="+", default=None, metavar="N", help="blocks per stage")
    g.add_argument("--drop-path", type=float, default=0.0, help="stochastic depth rate")
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int, default=20, help="length of the schedule")
    g.add_argument("--batch-size", type=int, default=64, help="global batch size (split over processes)")
    g.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    g.add_argument("--min-lr", type=float, default=1e-5, help="cosine floor")
    g.add_argument("--weight-decay", type=float, default=0.05,
                   help="AdamW decay of weight matrices/kernels (not norms, biases, scalars)")
    g.add_argument("--warmup-epochs", type=float, default=2.0, help="linear warmup length")
    g.add_argument("--label-smoothing", type=float, default=0.1, help="cross-entropy smoothing")
    g.add_argument("--clip-grad", type=float, default=1.0, help="max grad norm; 0 disables")
    g.add_argument("--amp", action="store_true", help="bf16 autocast on CPU, fp16 + GradScaler on CUDA")
    g.add_argument("--seed", type=int, default=0, help="split, init, sampling and augmentation")
    g = p.add_argument_group("run")
    g.add_argument("--out", default="runs/digits", help="directory for checkpoints and weights")
    g.add_argument("--resume", default=None, metavar="PATH", help="continue from a last.pt checkpoint")
    g.add_argument("--stop-at-epoch", type=int, default=None, metavar="E",
                   help="exit after epoch E (the schedule still spans --epochs); resume later")
    g.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads per process; 0 keeps torch's default. Small models "
                        "gain little from more, and spin-waiting threads collapse on a busy machine: "
                        "use torchrun to spread over cores")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    g.add_argument("--no-progress", action="store_true", help="no progress bar (also off when not a TTY)")
    return p


def _check_args(args: argparse.Namespace) -> None:
    if args.epochs < 1:
        raise TrainError("--epochs must be >= 1")
    if args.batch_size < 1:
        raise TrainError("--batch-size must be >= 1")
    if not 0.0 < args.val_fraction < 1.0:
        raise TrainError("--val-fraction must be in (0, 1)")
    if not 0.0 <= args.drop_path < 1.0:
        raise TrainError("--drop-path must be in [0, 1)")


def _merge_resumed_args(args: argparse.Namespace, parser: argparse.ArgumentParser,
                        saved: dict) -> argparse.Namespace:
    """Take training options from the checkpoint; refuse explicit options that disagree."""
    merged = dict(saved)
    for key, value in vars(args).items():
        if key in RUNTIME_OPTIONS or key not in saved:
            merged[key] = value
        elif value != parser.get_default(key) and value != saved[key]:
            flag = "--" + key.replace("_", "-")
            raise TrainError(f"{flag}={value} conflicts with the checkpoint ({saved[key]!r}); "
                             "a resumed run keeps its training options")
    return argparse.Namespace(**merged)


def _ensure_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as e:
        raise TrainError(f"cannot write to --out {str(out)!r}: {e.strerror or e}") from None


def _create_model(args: argparse.Namespace) -> nn.Module:
    from hyena_serve.models import create_model, list_models

    names = list_models()
    if args.model not in names:
        raise TrainError(f"unknown model {args.model!r}; available: {', '.join(sorted(names))}")
    kwargs = {"num_classes": NUM_CLASSES, "img_size": args.img_size, "drop_path_rate": args.drop_path}
    if args.dims and args.dims != ["native"]:
        kwargs["dims"] = _int_list(args.dims, "--dims")
    if args.depths:
        kwargs["depths"] = _int_list(args.depths, "--depths")
    return create_model(args.model, **kwargs)


def _model_config(model: nn.Module, args: argparse.Namespace) -> dict:
    """What rebuilds the architecture: the create_model arguments of this run."""
    dims = getattr(model, "dims", None)
    stages = getattr(model, "stages", None)
    return {"model": args.model, "dims": list(dims) if dims is not None else None,
            "depths": [len(s) for s in stages] if stages is not None else None,
            "num_classes": NUM_CLASSES, "img_size": args.img_size, "dataset": args.dataset}


def run_manifest(meta: dict, weights: Path, val_acc: float) -> Manifest:
    """The run's served-model manifest: the digits' own preprocessing (grey levels replicated
    to three channels, bilinear upsampling to the training size, the fixed mean/std) and
    labels "0"…"9", so ``--weights OUT`` serves the model as it was trained."""
    size = int(meta["img_size"])
    preprocess = Preprocessing(input_size=(3, size, size), crop_pct=1.0, interpolation="bilinear",
                               mean=DIGITS_MEAN, std=DIGITS_STD, channels="grayscale")
    kwargs = {k: meta[k] for k in ("dims", "depths", "num_classes", "img_size") if meta.get(k) is not None}
    return Manifest(model=meta["model"], resolution=size, num_classes=NUM_CLASSES, preprocess=preprocess,
                    weights=WeightsInfo(f"file:{weights.name}", sha256=sha256_file(weights)), pretrained=True,
                    labels=DIGITS_LABELS, variant=f"{meta['dataset']}-val{val_acc:.4f}", model_kwargs=kwargs)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _log(ctx: DistContext, msg: str) -> None:
    if ctx.is_main:
        print(msg, flush=True)


def run(args: argparse.Namespace, resume_state: dict | None, t_start: float) -> dict:
    device = resolve_device(args.device)
    ctx = init_distributed(device)
    try:
        return _train(args, resume_state, device, ctx, t_start)
    finally:
        cleanup(ctx)


def _train(args: argparse.Namespace, state: dict | None, device: torch.device, ctx: DistContext,
           t_start: float) -> dict:
    if args.batch_size % ctx.world_size:
        raise TrainError(f"--batch-size {args.batch_size} is not divisible by {ctx.world_size} processes")
    out = Path(args.out)
    # Every process draws its own drop-path masks; the model init must match everywhere.
    _seed_everything(args.seed)
    model = _create_model(args).to(device)
    _seed_everything(args.seed + ctx.rank)
    n_params = sum(p.numel() for p in model.parameters())

    train_split, val_split = load_digits_splits(args.img_size, args.val_fraction, args.seed, args.subset)
    steps = steps_per_epoch(len(train_split), args.batch_size, ctx)
    optimizer = build_optimizer(model, args.lr, args.weight_decay)
    total_steps = args.epochs * steps
    warmup_steps = min(round(args.warmup_epochs * steps), total_steps)
    scheduler = build_scheduler(optimizer, warmup_steps, total_steps, args.min_lr)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp and device.type == "cuda")
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)

    start_epoch, best_acc, best_epoch, history = 0, -1.0, 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(state["scaler"])
        start_epoch, best_acc, best_epoch = state["epoch"], state["best_val_acc"], state["best_epoch"]
        history = list(state.get("history", []))
        rngs = state["rng"]
        if len(rngs) == ctx.world_size:
            ckpt.set_rng_state(rngs[ctx.rank])
        else:  # a different process count cannot replay the same draws anyway
            _seed_everything(args.seed + ctx.rank + 7919 * start_epoch)
        _log(ctx, f"resumed from {args.resume} at epoch {start_epoch}/{args.epochs}")

    if ctx.enabled:
        # Depthwise conv weights (C, 1, k, k) get grads whose stride differs only along the
        # size-1 dim; DDP's layout check warns about that harmless case once per process.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    train_model = DistributedDataParallel(model) if ctx.enabled else model
    sampler = make_sampler(len(train_split), args.seed, ctx)
    progress = ctx.is_main and not args.no_progress and sys.stderr.isatty()
    meta = _model_config(model, args)
    _log(ctx, f"{args.model} dims={meta['dims']} params={n_params:,} | {args.dataset}: "
              f"{len(train_split)} train / {len(val_split)} val at {args.img_size}px | "
              f"{steps} steps/epoch, {ctx.world_size} process(es) on {device}, "
              f"{torch.get_num_threads()} thread(s) each")

    last_epoch = args.epochs if args.stop_at_epoch is None else min(args.epochs, args.stop_at_epoch)
    val = None
    t_train = time.perf_counter()
    for epoch in range(start_epoch, last_epoch):
        t0 = time.perf_counter()
        tr = train_one_epoch(train_model, train_split, sampler, epoch=epoch, batch_size=args.batch_size,
                             optimizer=optimizer, scheduler=scheduler, scaler=scaler,
                             criterion=criterion, device=device, amp=args.amp,
                             clip_grad=args.clip_grad, augment=not args.no_augment, seed=args.seed,
                             ctx=ctx, progress=progress, desc=f"epoch {epoch + 1}/{args.epochs}")
        if not math.isfinite(tr.loss):
            raise TrainError(f"training diverged: non-finite loss in epoch {epoch + 1}; lower --lr"
                             + (" or drop --amp" if args.amp else ""))
        # The unwrapped model: processes may run different numbers of val batches.
        val = evaluate(model, val_split, batch_size=max(args.batch_size, 256), device=device,
                       amp=args.amp, ctx=ctx)
        improved = val.acc > best_acc
        if improved:
            best_acc, best_epoch = val.acc, epoch + 1
        history.append({"epoch": epoch + 1, "train_loss": tr.loss, "train_acc": tr.acc,
                        "val_loss": val.loss, "val_acc": val.acc,
                        "lr": optimizer.param_groups[0]["lr"], "time_s": time.perf_counter() - t0})
        rngs = ckpt.gather_rng_states(ctx)
        if ctx.is_main:
            weights_meta = {**meta, "epoch": epoch + 1, "val_acc": val.acc}
            ckpt.save_weights(model, out / ckpt.WEIGHTS_LAST, weights_meta)
            if improved:
                ckpt.save_weights(model, out / ckpt.WEIGHTS_BEST, weights_meta)
                write_manifest(out / RUN_MANIFEST, run_manifest(meta, out / ckpt.WEIGHTS_BEST, val.acc))
            ckpt.save_training_state(out / ckpt.LAST, model=model, optimizer=optimizer,
                                     scheduler=scheduler, scaler=scaler, epoch=epoch + 1,
                                     best_val_acc=best_acc, best_epoch=best_epoch, rng_states=rngs,
                                     args=vars(args),
                                     extra={"model_config": meta, "history": history})
        _log(ctx, f"epoch {epoch + 1:3d}/{args.epochs} | train loss {tr.loss:.4f} acc {tr.acc:.4f} | "
                  f"val loss {val.loss:.4f} acc {val.acc:.4f}{' *' if improved else ''} | "
                  f"lr {optimizer.param_groups[0]['lr']:.2e} | {time.perf_counter() - t0:.1f}s")
    barrier(ctx)
    if val is None:  # nothing left to train (resumed at the end): report the current model
        val = evaluate(model, val_split, batch_size=max(args.batch_size, 256), device=device,
                       amp=args.amp, ctx=ctx)
    return {
        "model": args.model, "dims": meta["dims"], "params": n_params, "dataset": args.dataset,
        "img_size": args.img_size, "epochs_done": max(start_epoch, last_epoch), "epochs": args.epochs,
        "best_val_acc": round(best_acc, 6), "best_epoch": best_epoch,
        "final_val_acc": round(val.acc, 6), "final_val_loss": round(val.loss, 6),
        "val_samples": val.count, "wall_time_s": round(time.perf_counter() - t_start, 2),
        "train_time_s": round(time.perf_counter() - t_train, 2), "world_size": ctx.world_size,
        "device": str(device), "threads": torch.get_num_threads(), "out": str(out),
        "checkpoint": str(out / ckpt.LAST), "weights": str(out / ckpt.WEIGHTS_BEST),
        "manifest": str(out / RUN_MANIFEST),
    }


def main(argv: list[str] | None = None) -> int:
    t_start = time.perf_counter()
    parser = build_parser()
    args = parser.parse_args(argv)
    threads_before = torch.get_num_threads()
    try:
        state = None
        if args.resume is not None:
            if not os.path.isfile(args.resume):
                raise TrainError(f"resume checkpoint not found: {args.resume}")
            state = ckpt.load_training_state(args.resume)
            args = _merge_resumed_args(args, parser, state["args"])
        _check_args(args)
        _ensure_writable(Path(args.out))
        if args.threads < 0:
            raise TrainError("--threads must be >= 0")
        if args.threads > 0:
            torch.set_num_threads(args.threads)
        summary = run(args, state, t_start)
    except TrainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads_before)
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
