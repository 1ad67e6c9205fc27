"""Per-variant default configs: what a served model expects of its input.

The gateway, the exporter and the benchmarks read preprocessing from here (or from
``model.pretrained_cfg``), so they use the numbers the weights were trained with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelConfig:
    """Preprocessing and head of one model variant.

    ``input_size`` (C, H, W) is the resolution to serve at; ``filter_size`` (H, W) the input
    resolution the long filters' sizes were derived from (``hpx_former_s18_384`` serves at
    384 with the filters of 224). Resize so the shorter side is ``H / crop_pct`` with
    ``interpolation``, centre-crop to (H, W), scale to [0, 1], normalise with mean/std.
    """

    architecture: str
    input_size: tuple[int, int, int] = (3, 224, 224)
    crop_pct: float = 1.0
    interpolation: str = "bicubic"
    mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN
    std: tuple[float, ...] = IMAGENET_DEFAULT_STD
    num_classes: int = 1000
    filter_size: tuple[int, int] = (224, 224)
    dataset: str = "imagenet-1k"
    url: str = ""
    tags: tuple[str, ...] = field(default=())

    @property
    def img_size(self) -> tuple[int, int]:
        return self.input_size[1], self.input_size[2]


def _hf(repo: str) -> str:
    return f"https://huggingface.co/Spravil/{repo}/resolve/main/pytorch_model.bin"


def _cfg(name: str, url: str = "", **kwargs) -> ModelConfig:
    return ModelConfig(architecture=name, url=url, **kwargs)


#: The released ImageNet-1k checkpoints (trained with crop_pct 1.0, bicubic, ImageNet mean/std)
#: and the untrained small sizes used by tests and examples.
DEFAULT_CFGS: dict[str, ModelConfig] = {
    "hpx_former_s18": _cfg("hpx_former_s18", _hf("hpx_former_s18.westai_in1k")),
    "hpx_former_s18_384": _cfg("hpx_former_s18_384", _hf("hpx_former_s18.westai_in1k_ema_384"),
                               input_size=(3, 384, 384)),
    "hpx_former_b36": _cfg("hpx_former_b36", _hf("hpx_former_b36.westai_in1k")),
    "hpx_a_former_s18": _cfg("hpx_a_former_s18", _hf("hpx_a_former_s18.westai_in1k")),
    "c_hpx_former_s18": _cfg("c_hpx_former_s18", _hf("c_hpx_former_s18.westai_in1k")),
    "hb_former_s18": _cfg("hb_former_s18", _hf("hb_former_s18.westai_in1k")),
    "hb_former_b36": _cfg("hb_former_b36", _hf("hb_former_b36.westai_in1k")),
    "hb_a_former_s18": _cfg("hb_a_former_s18", _hf("hb_a_former_s18.westai_in1k")),
    "convformer_s18": _cfg("convformer_s18"),
    "hpx_former_s4": _cfg("hpx_former_s4"),
    "hpx_former_s12": _cfg("hpx_former_s12"),
    "hb_former_s4": _cfg("hb_former_s4"),
    "hb_former_s12": _cfg("hb_former_s12"),
    "hpx_a_former_s4": _cfg("hpx_a_former_s4"),
    "c_hpx_former_s4": _cfg("c_hpx_former_s4"),
    "hb_a_former_s4": _cfg("hb_a_former_s4"),
    "convformer_s4": _cfg("convformer_s4"),
}
