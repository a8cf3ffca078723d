"""Images in: every PIL mode preprocesses to the model's tensor; bad files give clear errors."""
import io
from pathlib import Path

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
    x = cf.preprocess(rgb, model, resize="squash")  # the preset tensor; keeping the aspect: test_resize.py
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


# ---- decoding: corrupt files, decode cost, memory bounded by the pixels -------------------------------------
def _corrupted(seed: int) -> bytes:
    """A valid file of some format with a few bytes changed and maybe cut short."""
    rng = np.random.default_rng(seed)
    fmt = ["PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP"][seed % 6]
    data = bytearray(_png(Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)), fmt))
    for pos in rng.integers(0, len(data), int(rng.integers(1, 8))):
        data[pos] = int(rng.integers(0, 256))
    return bytes(data[: int(rng.integers(len(data) // 2, len(data) + 1))] if seed % 3 == 0 else data)


def test_a_short_png_header_is_refused_as_an_image_problem():
    png = _png(Image.new("RGB", (16, 16)))
    short = png[:8] + (5).to_bytes(4, "big") + b"IHDR" + png[16:21] + png[33:]  # IHDR of 5 bytes, not 13
    with pytest.raises(cf.ImageError, match="not an image that can be read"):
        cf.load_image(short)


@pytest.mark.parametrize("seed", range(300))
def test_corrupted_files_decode_or_give_an_image_error(seed):
    try:
        rgb = cf.load_image(_corrupted(seed))
    except cf.ImageError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert rgb.mode == "RGB" and min(rgb.size) >= 8


def _tiff_declaring(width: int, height: int, bits: int = 32, sample_format: int = 3) -> bytes:
    """A little-endian TIFF header declaring one float (or int) greyscale strip of width x height; no data."""
    import struct
    tags = [(256, 4, width), (257, 4, height), (258, 3, bits), (259, 3, 1), (262, 3, 1), (273, 4, 8),
            (277, 3, 1), (278, 4, height), (279, 4, width * height * bits // 8), (339, 3, sample_format)]
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", t, typ, 1, v) if typ == 4 else
                                                   struct.pack("<HHIHH", t, typ, 1, v, 0) for t, typ, v in tags)
    return b"II*\0" + struct.pack("<I", 8 + 0) + ifd + b"\0\0\0\0"


def test_images_too_costly_to_decode_are_refused_from_the_header():
    from convformer.data.images import MAX_DECODE_BYTES, decode_cost, open_image
    data = _tiff_declaring(6300, 6300)  # 40 MP of 32-bit floats, in one strip
    with pytest.raises(cf.ImageError, match=r"6300 x 6300 px in mode F \(TIFF\); decoding it would need ~\d+ MB"):
        cf.load_image(data)
    img = Image.open(io.BytesIO(_tiff_declaring(3000, 3000)))
    assert decode_cost(img) <= MAX_DECODE_BYTES
    assert decode_cost(img, max_side=500) < decode_cost(img)
    with pytest.raises(cf.ImageError, match="truncated or corrupt"):  # accepted by its header; no data
        cf.load_image(_tiff_declaring(3000, 3000))
    assert open_image(_png(Image.new("RGB", (64, 64)))).size == (64, 64)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF"])
def test_max_side_bounds_the_result(fmt):
    img = Image.new("RGB", (300, 120), (10, 200, 30)) if fmt != "TIFF" else \
        Image.fromarray(np.linspace(0, 1, 300 * 120, dtype=np.float32).reshape(120, 300), "F")
    rgb = cf.load_image(_png(img, fmt), max_side=100)
    assert rgb.mode == "RGB" and max(rgb.size) <= 100 and max(rgb.size) >= 50
    assert abs(rgb.size[0] / rgb.size[1] - 2.5) < 0.2


PEAK = """
import io, sys, types
import numpy as np
from PIL import Image
sys.modules["convformer"] = types.ModuleType("convformer")  # images.py alone: no torch in this process
sys.modules["convformer"].__path__ = [sys.argv[2]]
from convformer.data.images import decode_cost, load_image
w, h, mode = 2000, 2000, sys.argv[1]
a = np.random.default_rng(0).random((h, w), dtype=np.float32)
img = {"F": Image.fromarray(a), "I;16": Image.fromarray((a * 65535).astype(np.uint16)),
       "RGBA": Image.fromarray((a * 255).astype(np.uint8)).convert("RGBA")}[mode]
buf = io.BytesIO(); img.save(buf, "TIFF" if mode == "F" else "PNG"); data = buf.getvalue()
cost = decode_cost(Image.open(io.BytesIO(data)))
del img, a
def hwm():  # peak resident bytes of this process (ru_maxrss would carry pytest's over exec)
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) * 1024
open("/proc/self/clear_refs", "w").write("5")  # the peak starts again from here
before = hwm()
rgb = load_image(data)
print((hwm() - before) / (w * h), cost / (w * h))
"""


@pytest.mark.parametrize("mode", ["F", "I;16", "RGBA"])
def test_decoding_memory_is_a_bounded_multiple_of_the_pixels(mode):
    """A 4 MP float TIFF took 32 bytes a pixel to decode (float64 copies of the whole image); now the peak
    stays within decode_cost, at most 8 bytes a pixel plus a strip's temporaries."""
    import subprocess
    import sys
    folder = str(Path(cf.__file__).parent)
    out = subprocess.run([sys.executable, "-c", PEAK, mode, folder], capture_output=True, text=True, check=True, timeout=120)
    per_pixel, cost = map(float, out.stdout.split())
    assert per_pixel <= cost * 1.1 + 1, (per_pixel, cost)
    assert cost <= 8.001 + 32 * 2**20 / 4e6
