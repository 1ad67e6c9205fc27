"""Per-variant default configs: what a served model expects of its input.

The exporter and the benchmarks read preprocessing from here (or from
``model.pretrained_cfg``); the served-model manifest carries it to the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hyena_serve.preprocess import Preprocessing

#: Where the released checkpoints live on the Hugging Face Hub, and the file in each repo.
HF_HUB_ORG = "Spravil"
HF_HUB_FILENAME = "pytorch_model.bin"


@dataclass(frozen=True)
class ModelConfig:
    """Preprocessing, head and released weights of one model variant.

    ``preprocess.input_size`` (C, H, W) is the resolution to serve at; ``filter_size``
    (H, W) the input resolution the long filters' sizes were derived from
    (``hpx_former_s18_384`` serves at 384 with the filters of 224). ``hf_hub_id`` names the
    Hub repository of the released weights (``""`` when there are none).
    """

    architecture: str
    preprocess: Preprocessing = Preprocessing()
    num_classes: int = 1000
    filter_size: tuple[int, int] = (224, 224)
    dataset: str = "imagenet-1k"
    hf_hub_id: str = ""
    tags: tuple[str, ...] = field(default=())

    @property
    def img_size(self) -> tuple[int, int]:
        return self.preprocess.input_size[1], self.preprocess.input_size[2]


def _cfg(name: str, release: str = "", res: int = 224) -> ModelConfig:
    """A variant's config; ``release`` is the Hub repo name of its released checkpoint."""
    return ModelConfig(architecture=name, hf_hub_id=f"{HF_HUB_ORG}/{release}" if release else "",
                       preprocess=replace(Preprocessing(), input_size=(3, res, res)))


#: The released ImageNet-1k checkpoints (trained with crop_pct 1.0, bicubic, ImageNet mean/std)
#: and the untrained small sizes used by tests and examples.
DEFAULT_CFGS: dict[str, ModelConfig] = {
    "hpx_former_s18": _cfg("hpx_former_s18", "hpx_former_s18.westai_in1k"),
    "hpx_former_s18_384": _cfg("hpx_former_s18_384", "hpx_former_s18.westai_in1k_ema_384", res=384),
    "hpx_former_b36": _cfg("hpx_former_b36", "hpx_former_b36.westai_in1k"),
    "hpx_a_former_s18": _cfg("hpx_a_former_s18", "hpx_a_former_s18.westai_in1k"),
    "c_hpx_former_s18": _cfg("c_hpx_former_s18", "c_hpx_former_s18.westai_in1k"),
    "hb_former_s18": _cfg("hb_former_s18", "hb_former_s18.westai_in1k"),
    "hb_former_b36": _cfg("hb_former_b36", "hb_former_b36.westai_in1k"),
    "hb_a_former_s18": _cfg("hb_a_former_s18", "hb_a_former_s18.westai_in1k"),
    "convformer_s18": _cfg("convformer_s18"),
    "sasa_former_s18": _cfg("sasa_former_s18"),
    "gf_former_s18": _cfg("gf_former_s18"),
    "aff_former_s18": _cfg("aff_former_s18"),
    "hpx_former_s4": _cfg("hpx_former_s4"),
    "hpx_former_s12": _cfg("hpx_former_s12"),
    "hb_former_s4": _cfg("hb_former_s4"),
    "hb_former_s12": _cfg("hb_former_s12"),
    "hpx_a_former_s4": _cfg("hpx_a_former_s4"),
    "c_hpx_former_s4": _cfg("c_hpx_former_s4"),
    "hb_a_former_s4": _cfg("hb_a_former_s4"),
    "convformer_s4": _cfg("convformer_s4"),
    "sasa_former_s4": _cfg("sasa_former_s4"),
    "gf_former_s4": _cfg("gf_former_s4"),
    "aff_former_s4": _cfg("aff_former_s4"),
}
