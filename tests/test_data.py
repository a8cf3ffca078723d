"""Images in: every PIL mode preprocesses to the model's tensor; bad files give clear errors."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

import convformer as cf
from convformer.data import pick_device
from tests.test_model import tiny


def _png(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


MODES = {
    "RGB": Image.new("RGB", (50, 30), (200, 10, 10)),
    "RGBA": Image.new("RGBA", (50, 30), (200, 10, 10, 100)),
    "L": Image.new("L", (50, 30), 128),
    "LA": Image.new("LA", (50, 30), (128, 50)),
    "P": Image.new("RGB", (50, 30), (0, 200, 0)).convert("P"),
    "I;16": Image.fromarray(np.full((30, 50), 40000, dtype=np.uint16)),
    "CMYK": Image.new("CMYK", (50, 30), (0, 100, 100, 0)),
}


@pytest.mark.parametrize("mode", sorted(MODES))
def test_any_mode_preprocesses_to_the_preset_tensor(mode):
    model = tiny("mid", img_size=(40, 48))
    rgb = cf.load_image(_png(MODES[mode], "TIFF" if mode == "CMYK" else "PNG"))
    assert rgb.mode == "RGB" and rgb.size == (50, 30)
    x = cf.preprocess(rgb, model)
    assert x.shape == (1, 3, 40, 48) and torch.isfinite(x).all()


def test_sixteen_bit_is_scaled_not_clipped():
    rgb = cf.load_image(_png(MODES["I;16"]))
    assert rgb.getpixel((0, 0)) == (156, 156, 156)  # 40000 / 257


def test_exif_rotation_is_applied():
    img = Image.new("RGB", (60, 20), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90
    assert cf.load_image(_png(img, "JPEG", exif=exif)).size == (20, 60)


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (20, 20), c) for c in ("red", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    assert cf.load_image(buf.getvalue()).getpixel((0, 0))[0] > 200


@pytest.mark.parametrize("data, words", [
    (b"", "not an image"),
    (b"just text, renamed .png", "not an image"),
    (_png(Image.new("RGB", (1, 1))), "at least 8 px"),
    (_png(Image.new("RGB", (64, 64)))[:60], "truncated or corrupt|not an image"),
])
def test_bad_images_are_refused_clearly(data, words):
    with pytest.raises(cf.ImageError, match=words):
        cf.load_image(data)


def test_huge_declared_size_is_refused_before_decoding():
    png = bytearray(_png(Image.new("L", (20, 20))))
    png[16:24] = (20000).to_bytes(4, "big") * 2  # IHDR width and height; the CRC no longer matches
    with pytest.raises(cf.ImageError):
        cf.load_image(bytes(png))


def test_device_override(monkeypatch):
    assert pick_device("cpu").type == "cpu"
    monkeypatch.setenv("CONVFORMER_DEVICE", "cpu")
    assert pick_device().type == "cpu"
    with pytest.raises(ValueError, match="device='banana'"):
        pick_device("banana")
