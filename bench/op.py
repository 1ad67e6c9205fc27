"""FFT convolution vs direct full-kernel convolution at the stage shapes of the S18 models.

Per stage shape (hpx_former_s18: 2D filters K = 2H-1; hb_former_s18: 1D bidirectional
filters K = 2L-1 over the raster-flattened map) the alternatives are

- ``torch fft_conv`` (the baseline): ``hyena::fft_conv`` with a precomputed ``Kf``;
- ``torch direct conv``: depthwise convolution with the same full filter;
- ``ORT <body>``: the one-node ``hyena::FFTConv`` model with each ONNX function body, run
  by ONNX Runtime in its own process (torch and ORT in one process slow torch's FFT);
- on a GPU also ``torch fft_conv fp16``.

All are timed interleaved in the same run; ratios are against the torch fft_conv.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from bench.timing import Subprocess, SubprocessError, compare, idle, ort_runner, ratios
from hyena_serve.contract import MODE_1D_BIDIR, MODE_2D, MODE_2D_CIRCULAR, plan_fft
from hyena_serve.ops import direct_circular_conv2d, direct_conv1d_bidir, direct_conv2d, fft_conv, filter_spectrum

BASELINE = "torch fft_conv"
DIRECT = "torch direct conv"


@dataclass(frozen=True)
class OpShape:
    model: str
    stage: int
    channels: int
    size: int  # feature map side at 224

    @property
    def label(self) -> str:
        return f"{self.model} stage {self.stage}: {self.channels}x{self.size}x{self.size}"


#: hpx_former_s18 / hb_former_s18 at 224: dims 64/128/320/512 on 56/28/14/7 maps.
S18_STAGES = [(64, 56), (128, 28), (320, 14), (512, 7)]
HPX_S18_SHAPES = [OpShape("hpx_former_s18", i, c, s) for i, (c, s) in enumerate(S18_STAGES)]
HB_S18_SHAPES = [OpShape("hb_former_s18", i, c, s) for i, (c, s) in enumerate(S18_STAGES)]
#: gf_former_s18 (the circular mode: the filter is the map) and aff_former_s18 (RFFT2/IRFFT2
#: of the map) have the same stage maps; the GPU benchmark times their plugins there.
GF_S18_SHAPES = [OpShape("gf_former_s18", i, c, s) for i, (c, s) in enumerate(S18_STAGES)]
AFF_S18_SHAPES = [OpShape("aff_former_s18", i, c, s) for i, (c, s) in enumerate(S18_STAGES)]
#: Smoke-test shapes (``--tiny``).
TINY_SHAPES = [OpShape("tiny", 0, 4, 8)]


@dataclass(frozen=True)
class OpCase:
    """Tensors of one op benchmark: input, filter, its spectrum, skip and the plan."""

    x: torch.Tensor
    k: torch.Tensor
    kf: torch.Tensor
    d: torch.Tensor
    plan: object

    def fft(self, x: torch.Tensor | None = None) -> torch.Tensor:
        p = self.plan
        return fft_conv(self.x if x is None else x, self.kf, self.d, p.mode, list(p.kernel), list(p.fft))

    def direct(self) -> torch.Tensor:
        if self.plan.mode == MODE_2D:
            return direct_conv2d(self.x, self.k, self.d)
        if self.plan.mode == MODE_2D_CIRCULAR:
            return direct_circular_conv2d(self.x, self.k, self.d)
        return direct_conv1d_bidir(self.x.flatten(-2), self.k, self.d)


def make_case(shape: OpShape, mode: str, batch: int, device: str = "cpu") -> OpCase:
    gen = torch.Generator().manual_seed(0)
    c, h = shape.channels, shape.size
    x = torch.randn(batch, c, h, h, generator=gen)
    d = torch.randn(c, generator=gen)
    if mode == MODE_2D:
        kernel = (2 * h - 1, 2 * h - 1)
        k = torch.randn(c, *kernel, generator=gen) * 0.01
        plan = plan_fft(mode, h, h, kernel)
    elif mode == MODE_2D_CIRCULAR:
        k = torch.randn(c, h, h, generator=gen) * 0.01
        plan = plan_fft(mode, h, h)
    else:
        length = 2 * h * h - 1
        k = torch.randn(c, length, generator=gen) * 0.01
        plan = plan_fft(mode, h, h, length)
    kf = filter_spectrum(k, plan)
    return OpCase(x.to(device), k.to(device), kf.to(device), d.to(device), plan)


def onnx_op_bytes(case: OpCase, body: str) -> bytes:
    """Serialized one-node ``hyena::FFTConv`` model of ``case`` with the ``body`` function."""
    from hyena_serve.exporting.fftconv_onnx import standalone_model

    h, w = case.x.shape[-2:]
    model = standalone_model(case.plan, case.kf.cpu().numpy(), case.d.cpu().numpy(), body=body, hw=(h, w))
    return model.SerializeToString()


def available_bodies() -> tuple[tuple[str, ...], str | None]:
    """The ONNX function bodies to run, or () and why not."""
    try:
        import onnxruntime  # noqa: F401

        from hyena_serve.exporting.fftconv_onnx import BODIES
    except ImportError as exc:
        return (), f"skipped: {exc}"
    return tuple(BODIES), None


def bench_op_shape(shape: OpShape, mode: str, *, batch: int = 1, rounds: int = 10, warmup: int = 1,
                   include_direct: bool = True, max_seconds: float = 30.0,
                   ort: dict[str, Subprocess] | None = None, threads: int | None = None,
                   device: str = "cpu", progress: Callable[[], None] | None = None) -> dict:
    """Time the alternatives at one stage shape. ``ort``: one (reused) child process per body."""
    case = make_case(shape, mode, batch, device)
    alternatives: dict[str, object] = {BASELINE: case.fft}
    if include_direct:
        alternatives[DIRECT] = case.direct
    if device == "cuda":
        x16 = case.x.half()
        alternatives["torch fft_conv fp16"] = lambda: case.fft(x16)
    notes = {}
    for body, child in (ort or {}).items():
        name = f"ORT {body} body"
        try:
            setup = child.load(ort_runner, onnx_op_bytes(case, body), {"X": case.x.cpu().numpy()}, threads)
        except (SubprocessError, ValueError, RuntimeError) as exc:
            notes[name] = f"skipped: {exc}"
            continue
        notes[name] = f"session created in {setup:.1f} s"
        alternatives[name] = child
    sync = torch.cuda.synchronize if device == "cuda" else None
    with torch.inference_mode():
        stats = compare(alternatives, rounds=rounds, warmup=warmup, max_seconds=max_seconds, sync=sync,
                        progress=progress)
    return {
        "shape": shape.label,
        "model": shape.model,
        "stage": shape.stage,
        "channels": shape.channels,
        "size": shape.size,
        "mode": mode,
        "batch": batch,
        "kernel": list(case.plan.kernel),
        "fft": list(case.plan.fft),
        "baseline": BASELINE,
        "stats": {name: s.as_dict() for name, s in stats.items()},
        "speedup_vs_baseline": ratios(stats, BASELINE),
        "fft_speedup_over_direct": ratios(stats, DIRECT)[BASELINE] if include_direct else None,
        "notes": notes,
    }


@dataclass
class OpSettings:
    shapes: list[tuple[OpShape, str]]
    batch: int = 1
    rounds: int = 10
    warmup: int = 1
    max_seconds: float = 60.0
    ort: bool = True
    direct: bool = True


def settings_for(quick: bool = False, tiny: bool = False, stages: list[int] | None = None) -> OpSettings:
    if tiny:
        return OpSettings([(s, m) for s in TINY_SHAPES for m in (MODE_2D, MODE_1D_BIDIR)], rounds=2, warmup=1,
                          max_seconds=5.0)
    if stages is None:
        stages = [0, 3] if quick else [0, 1, 2, 3]
    shapes = [(HPX_S18_SHAPES[i], MODE_2D) for i in stages] + [(HB_S18_SHAPES[i], MODE_1D_BIDIR) for i in stages]
    if quick:
        return OpSettings(shapes, rounds=3, warmup=1, max_seconds=8.0)
    return OpSettings(shapes, rounds=10, warmup=2, max_seconds=60.0)


def run(settings: OpSettings, *, threads: int | None = None, device: str = "cpu", progress=None) -> dict:
    """The op section of a report: one entry per (shape, mode), plus what was skipped."""
    bodies, why = available_bodies() if settings.ort else ((), "skipped: --no-ort")
    skipped = {} if why is None else {"ORT bodies": why}
    children: dict[str, Subprocess] = {}
    try:
        for body in bodies:
            try:
                children[body] = Subprocess(idle, threads=threads)
            except SubprocessError as exc:
                skipped[f"ORT {body} body"] = f"skipped: {exc}"
        results = []
        for shape, mode in settings.shapes:
            results.append(bench_op_shape(
                shape, mode, batch=settings.batch, rounds=settings.rounds, warmup=settings.warmup,
                include_direct=settings.direct, max_seconds=settings.max_seconds, ort=children,
                threads=threads, device=device, progress=progress))
    finally:
        for child in children.values():
            child.close()
    return {"baseline": BASELINE, "results": results, "skipped": skipped,
            "ort_placement": "each ORT body in its own process, interleaved call by call with torch in this one"}


def summary_lines(section: dict) -> list[str]:
    lines = []
    for r in section["results"]:
        parts = [f"{name} {s['median_ms']:.2f} ms" for name, s in r["stats"].items()]
        lines.append(f"{r['shape']} [{r['mode']}]: " + ", ".join(parts))
    return lines


def main() -> None:
    """``python -m bench.op``: the full op benchmark, printed (``python -m bench op`` also writes reports)."""
    section = run(settings_for())
    for line in summary_lines(section):
        print(line, flush=True)


if __name__ == "__main__":
    main()
