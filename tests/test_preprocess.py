"""Decoding and preprocessing: every image mode, bad bytes, the pixel cap, the transform."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hyena_serve.preprocess import (
    ImageError,
    Preprocessing,
    decode_image,
    preprocess_bytes,
    preprocess_images,
    resize_and_crop,
    to_rgb,
)


def Cfg(**kw) -> Preprocessing:  # noqa: N802  (reads like the config it builds)
    return Preprocessing(**{"input_size": (3, 32, 32), **kw})


def _encode(image: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _photo(w: int = 60, h: int = 40) -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "CMYK", "I;16", "I", "F", "1", "RGB"])
def test_every_mode_becomes_rgb_of_the_model_size(mode):
    if mode in ("I;16", "I", "F"):
        sixteen_bit = Image.fromarray(np.arange(2400, dtype=np.uint16).reshape(40, 60) * 20)
        image = sixteen_bit if mode == "I;16" else sixteen_bit.convert(mode)
    else:
        image = _photo().convert(mode)
    assert image.mode == mode
    out = preprocess_images([image], Cfg())
    assert out.shape == (1, 3, 32, 32) and out.dtype == np.float32
    assert np.isfinite(out).all()


def test_sixteen_bit_greyscale_uses_its_full_range():
    image = Image.fromarray(np.array([[0, 65535]], dtype=np.uint16))
    assert image.mode == "I;16"
    rgb = np.asarray(to_rgb(image))
    assert rgb.min() == 0 and rgb.max() == 255


def test_transparent_pixels_composite_onto_white():
    image = Image.new("RGBA", (4, 4), (10, 20, 30, 0))
    assert np.asarray(to_rgb(image)).min() == 255


def test_exif_orientation_is_applied():
    image = _photo(60, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    decoded = decode_image(_encode(image, "JPEG", exif=exif))
    assert decoded.size == (60, 40)
    assert to_rgb(decoded).size == (40, 60)


def test_resize_shorter_side_then_centre_crop():
    cfg = Cfg(input_size=(3, 20, 20), crop_pct=0.8)
    out = resize_and_crop(_photo(100, 50), cfg)
    assert out.size == (20, 20)
    # shorter side 50 -> floor(20 / 0.8) = 25, so the crop keeps the central 80%.
    full = _photo(100, 50).resize((50, 25), Image.Resampling.BICUBIC)
    expected = full.crop((15, 2, 35, 22))
    assert np.array_equal(np.asarray(out), np.asarray(expected))


def test_normalisation_uses_mean_and_std():
    image = Image.new("RGB", (32, 32), (255, 0, 128))
    out = preprocess_images([image], Cfg())[0]
    np.testing.assert_allclose(out[:, 0, 0], (np.array([1.0, 0.0, 128 / 255]) - Cfg().mean) / Cfg().std, rtol=1e-6)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty body"),
        (b"hello, not an image", "not an image"),
        (_encode(_photo(), "PNG")[:200], "truncated"),
        (_encode(_photo(), "JPEG")[:300], "truncated"),
    ],
)
def test_bad_bytes_raise_a_clear_reason(data, reason):
    with pytest.raises(ImageError, match=reason) as info:
        preprocess_bytes(data, Cfg())
    assert info.value.status == 400


def test_pixel_cap_is_checked_before_decoding():
    data = _encode(Image.new("L", (3000, 3000)), "PNG")
    with pytest.raises(ImageError, match="over the limit") as info:
        decode_image(data, max_pixels=1_000_000)
    assert info.value.status == 413


def test_unsupported_format_is_415():
    data = _encode(_photo(), "ICO")
    with pytest.raises(ImageError, match="unsupported image format") as info:
        decode_image(data)
    assert info.value.status == 415


def test_grayscale_channels_feed_the_luma_to_every_channel():
    cfg = Cfg(input_size=(3, 8, 8), interpolation="bilinear", mean=(0.3, 0.3, 0.3), std=(0.4, 0.4, 0.4),
              channels="grayscale")
    colour = Image.fromarray(np.full((8, 8, 3), (200, 40, 90), np.uint8))
    out = preprocess_images([colour], cfg)[0]
    luma = np.asarray(colour.convert("L"), np.float32)[0, 0] / 255.0
    np.testing.assert_allclose(out[:, 3, 3], (luma - 0.3) / 0.4, rtol=1e-6)
    assert out.shape == (3, 8, 8)


def test_preprocessing_round_trips_through_a_dict_and_rejects_nonsense():
    cfg = Cfg(crop_pct=0.875, channels="grayscale")
    d = cfg.to_dict()
    assert d["resize"] == [36, 36]  # floor(32 / 0.875): the shorter-side resize, for non-Python clients
    assert Preprocessing.from_dict(d) == cfg
    with pytest.raises(ValueError, match="interpolation"):
        Cfg(interpolation="cubic-ish")
    with pytest.raises(ValueError, match="channels"):
        Cfg(channels="cmyk")
    with pytest.raises(ValueError, match="crop_pct"):
        Cfg(crop_pct=0)
    with pytest.raises(ValueError, match="mean/std"):
        Cfg(mean=(0.5,))
    with pytest.raises(ValueError, match="invalid preprocessing"):
        Preprocessing.from_dict({"crop_pct": 1.0})


def test_jpeg_draft_decoding_is_smaller_and_close_to_the_full_decode():
    photo = Image.fromarray(np.asarray(_photo(60, 40).resize((1600, 1200), Image.Resampling.BICUBIC)))
    data = _encode(photo, "JPEG", quality=90)
    cfg = Cfg(input_size=(3, 64, 64), crop_pct=0.875)
    drafted = decode_image(data, draft_for=cfg)
    assert drafted.size == (200, 150)  # 1/8 scale: the smallest whose shorter side still reaches 64 / 0.875
    full = preprocess_bytes(data, cfg)
    fast = preprocess_bytes(data, cfg, draft=True)
    assert fast.shape == full.shape and np.abs(fast - full).mean() < 0.02  # normalised units (~1 grey level)
    png = _encode(photo, "PNG")
    assert decode_image(png, draft_for=cfg).size == (1600, 1200)  # only JPEG has a draft mode
    small = _encode(_photo(60, 40), "JPEG")
    assert decode_image(small, draft_for=cfg).size == (60, 40)  # never below the resize target
