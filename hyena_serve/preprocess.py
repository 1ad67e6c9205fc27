"""Image bytes -> validated PIL image -> normalised float32 NCHW batch.

One pure module (no torch, no I/O besides the bytes handed in) shared by the gateway,
the export parity check, evaluation and the benchmarks, so every path feeds the model the
same numbers. The transform follows the model's preprocessing config: resize the shorter
side to ``size / crop_pct`` with the configured filter, centre-crop ``size``, scale to
[0, 1], normalise with mean/std (timm's eval transform for these checkpoints).
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

_FILTERS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}

#: Formats the gateway accepts; anything else Pillow can open is refused as unsupported.
SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"})

#: Default pixel cap: a 64-megapixel photo decodes to ~200 MB of RGB; beyond that a
#: request is far more likely an attack (decompression bomb) than a photo.
DEFAULT_MAX_PIXELS = 64_000_000


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CHANNEL_MODES = ("rgb", "grayscale")


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input: the one description of it that the model
    registry, the served-model manifest, the gateway and the export checks share.

    ``input_size`` (C, H, W): the model input; resize the shorter side to ``H / crop_pct``
    with ``interpolation``, centre-crop (H, W), scale to [0, 1], normalise with mean/std.
    ``channels="grayscale"`` feeds the luma of the image, replicated to the C channels
    (models trained on single-channel data, e.g. the digits example).
    """

    input_size: tuple[int, int, int] = (3, 224, 224)
    crop_pct: float = 1.0
    interpolation: str = "bicubic"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channels: str = "rgb"

    def __post_init__(self) -> None:
        if self.interpolation not in _FILTERS:
            raise ValueError(f"unknown interpolation {self.interpolation!r}; expected one of {sorted(_FILTERS)}")
        if self.channels not in CHANNEL_MODES:
            raise ValueError(f"unknown channels {self.channels!r}; expected one of {CHANNEL_MODES}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        if len(self.mean) != self.input_size[0] or len(self.std) != self.input_size[0]:
            raise ValueError(f"mean/std need {self.input_size[0]} values, got {self.mean} / {self.std}")

    def at_resolution(self, res: int) -> Preprocessing:
        """The same preprocessing for a square ``res``×``res`` input."""
        return replace(self, input_size=(self.input_size[0], res, res))

    def to_dict(self) -> dict:
        d = asdict(self)
        # Derived, for readers that do not re-implement crop_pct: the shorter-side resize.
        d["resize"] = [math.floor(s / self.crop_pct) for s in self.input_size[1:]]
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> Preprocessing:
        try:
            return cls(input_size=tuple(int(v) for v in d["input_size"]), crop_pct=float(d["crop_pct"]),
                       interpolation=str(d["interpolation"]), mean=tuple(float(v) for v in d["mean"]),
                       std=tuple(float(v) for v in d["std"]), channels=str(d.get("channels", "rgb")))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid preprocessing {dict(d)!r}: {exc}") from None


class ImageError(ValueError):
    """The bytes are not an image we can classify; ``reason`` is safe to show a client."""

    def __init__(self, reason: str, *, status: int = 400):
        super().__init__(reason)
        self.reason = reason
        self.status = status


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 draft_for: Preprocessing | None = None) -> Image.Image:
    """Decode and fully load an image, enforcing the pixel cap before decoding.

    With ``draft_for``, a JPEG is decoded in libjpeg's draft mode: scaled by 1/2, 1/4 or 1/8
    while decoding, to the smallest size still at least the preprocessing's resize target,
    so a 12-megapixel photo costs a fraction of a full decode (measured 5.2× faster decode +
    preprocess, ``python -m bench.serving``; the model input differs by about one grey level).

    Raises :class:`ImageError` for empty input, non-images, unsupported formats, truncated
    files and images over ``max_pixels`` (status 413 for the latter).
    """
    if not data:
        raise ImageError("empty body: expected image bytes")
    try:
        with warnings.catch_warnings():
            # Pillow only raises above 2x its own limit and warns below; our cap is the
            # explicit check just below, made on the header before any pixel is decoded.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageError("not an image: the bytes match no known image format") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image too large: {exc}", status=413) from None
    except (OSError, SyntaxError, ValueError) as exc:
        # Raised while reading the header: the file is cut short or its header is broken.
        raise ImageError(f"corrupt or truncated image header: {exc}") from None
    if image.format not in SUPPORTED_FORMATS:
        raise ImageError(
            f"unsupported image format {image.format}; supported: {', '.join(sorted(SUPPORTED_FORMATS))}",
            status=415,
        )
    width, height = image.size
    if width < 1 or height < 1:
        raise ImageError(f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageError(
            f"image has {width}x{height} = {width * height} pixels, over the limit of {max_pixels}", status=413
        )
    if draft_for is not None and image.format == "JPEG":
        # The shorter side must still reach the largest resize target (orientation-agnostic).
        target = max(draft_for.input_size[1:]) / draft_for.crop_pct
        factor = target / min(width, height)
        if factor < 1.0:
            image.draft(image.mode, (math.ceil(width * factor), math.ceil(height * factor)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"corrupt or truncated {image.format} image: {exc}") from None
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Apply EXIF orientation and convert any mode (L, LA, P, RGBA, CMYK, I;16, I, F) to RGB.

    Transparent pixels are composited onto white, which is how a viewer shows them; plain
    ``convert("RGB")`` would expose whatever colour the encoder left under alpha = 0.
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit/32-bit greyscale: rescale the full range to 8 bits instead of clipping.
        arr = np.asarray(image, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
        image = Image.fromarray(scaled.round().astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB") if image.mode != "RGB" else image


def resize_and_crop(image: Image.Image, config: Preprocessing) -> Image.Image:
    """Resize the shorter side to ``size / crop_pct`` and centre-crop to the model's size."""
    _, out_h, out_w = config.input_size
    resample = _FILTERS[config.interpolation]
    scale_h = math.floor(out_h / config.crop_pct)
    scale_w = math.floor(out_w / config.crop_pct)
    width, height = image.size
    # Keep the aspect ratio: the shorter side lands on the scale size (square outputs), or
    # each side is scaled enough to cover the crop (non-square outputs).
    factor = max(scale_h / height, scale_w / width)
    new_w, new_h = max(out_w, round(width * factor)), max(out_h, round(height * factor))
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), resample=resample)
    left, top = (new_w - out_w) // 2, (new_h - out_h) // 2
    return image.crop((left, top, left + out_w, top + out_h))


def normalize(image: Image.Image, config: Preprocessing) -> np.ndarray:
    """RGB (or, for ``channels="grayscale"``, L) image -> float32 CHW, scaled to [0, 1] and
    normalised with the config's mean/std."""
    arr = np.asarray(image, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], config.input_size[0], axis=-1)
    mean = np.asarray(config.mean, dtype=np.float32)
    std = np.asarray(config.std, dtype=np.float32)
    return np.ascontiguousarray(((arr - mean) / std).transpose(2, 0, 1))


def preprocess_image(image: Image.Image, config: Preprocessing) -> np.ndarray:
    """One PIL image (any mode) -> float32 (C, H, W) ready for the model."""
    image = to_rgb(image)
    if config.channels == "grayscale":
        image = image.convert("L")
    return normalize(resize_and_crop(image, config), config)


def preprocess_images(images: Sequence[Image.Image], config: Preprocessing) -> np.ndarray:
    """A batch of PIL images -> float32 (N, 3, H, W)."""
    if not images:
        raise ValueError("preprocess_images needs at least one image")
    return np.stack([preprocess_image(image, config) for image in images])


def preprocess_bytes(data: bytes, config: Preprocessing, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                     draft: bool = False) -> np.ndarray:
    """Encoded image bytes -> float32 (C, H, W); raises :class:`ImageError` for bad input.
    ``draft``: decode JPEGs in draft mode (see :func:`decode_image`)."""
    image = decode_image(data, max_pixels=max_pixels, draft_for=config if draft else None)
    return preprocess_image(image, config)
