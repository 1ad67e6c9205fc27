"""FFT convolution vs direct full-kernel convolution at the stage shapes of the S18 models.

Prints, per stage, the median latency of each path and the speed-up of the FFT conv
over the direct depthwise convolution with the same (global) filter.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from bench.timing import compare, ratios
from hyena_serve.contract import MODE_1D_BIDIR, MODE_2D, plan_fft
from hyena_serve.ops import direct_conv1d_bidir, direct_conv2d, fft_conv, filter_spectrum


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
HPX_S18_SHAPES = [OpShape("hpx_former_s18", i, c, s) for i, (c, s) in enumerate([(64, 56), (128, 28), (320, 14), (512, 7)])]
HB_S18_SHAPES = [OpShape("hb_former_s18", i, c, s) for i, (c, s) in enumerate([(64, 56), (128, 28), (320, 14), (512, 7)])]


def bench_op_shape(shape: OpShape, mode: str, *, batch: int = 1, rounds: int = 10,
                   include_direct: bool = True, max_seconds: float = 30.0) -> dict:
    c, h = shape.channels, shape.size
    x = torch.randn(batch, c, h, h)
    d = torch.randn(c)
    if mode == MODE_2D:
        kernel = (2 * h - 1, 2 * h - 1)
        k = torch.randn(c, *kernel) * 0.01
        plan = plan_fft(mode, h, h, kernel)
        direct = lambda: direct_conv2d(x, k, d)  # noqa: E731
    else:
        length = h * h
        k = torch.randn(c, 2 * length - 1) * 0.01
        plan = plan_fft(mode, h, h, 2 * length - 1)
        direct = lambda: direct_conv1d_bidir(x.flatten(-2), k, d)  # noqa: E731
    kf = filter_spectrum(k, plan)
    alternatives = {"fft_conv (cached Kf)": lambda: fft_conv(x, kf, d, mode, list(plan.kernel), list(plan.fft))}
    if include_direct:
        alternatives["direct conv"] = direct
    with torch.inference_mode():
        stats = compare(alternatives, rounds=rounds, warmup=1, max_seconds=max_seconds)
    result = {
        "shape": shape.label,
        "mode": mode,
        "batch": batch,
        "kernel": list(plan.kernel),
        "fft": list(plan.fft),
        "stats": {name: s.as_dict() for name, s in stats.items()},
    }
    if include_direct:
        result["fft_speedup_over_direct"] = ratios(stats, "direct conv")["fft_conv (cached Kf)"]
    return result


def run(quick: bool = False) -> list[dict]:
    rounds = 3 if quick else 10
    results = []
    for shapes, mode in ((HPX_S18_SHAPES, MODE_2D), (HB_S18_SHAPES, MODE_1D_BIDIR)):
        for shape in shapes:
            results.append(bench_op_shape(shape, mode, rounds=rounds, max_seconds=10.0 if quick else 60.0))
    return results


def main() -> None:
    torch.set_num_threads(torch.get_num_threads())
    for r in run():
        line = f"{r['shape']:40s} {r['mode']:9s} fft {r['stats']['fft_conv (cached Kf)']['median_ms']:9.2f} ms"
        if "direct conv" in r["stats"]:
            line += f"  direct {r['stats']['direct conv']['median_ms']:10.2f} ms  speed-up {r['fft_speedup_over_direct']:8.1f}x"
        print(line, flush=True)


if __name__ == "__main__":
    main()
