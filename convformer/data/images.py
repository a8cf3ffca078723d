"""Images in, with memory bounded by the image's pixels: read the header, check size, mode and decode cost,
then decode and convert to 8-bit RGB in strips.

Decoding never holds more than the image in its own mode plus its RGB result (or, if larger, a TIFF's
biggest strip or tile of raw samples): `decode_cost` computes that from the header and `load_image` refuses an image whose
cost is over `MAX_DECODE_BYTES` before decoding a pixel. The conversion to RGB (16-bit and float scaling,
transparency on white, palettes, CMYK) runs on strips of about a megapixel, so its temporaries stay small
whatever the image; EXIF rotation is applied once, on the RGB result. With `max_side`, JPEGs are decoded
at a reduced scale (`Image.draft`, the DCT scaling of libjpeg) and other formats are reduced strip by strip,
so the result is never larger than asked.
"""
from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from ..messages import shown

MAX_PIXELS = 40_000_000         # about 6300 x 6300; larger images are refused before decoding
MIN_SIDE = 8                    # smaller images carry no usable content
MAX_BYTES = 50_000_000          # encoded file size
MAX_DECODE_BYTES = 300_000_000  # what decoding may hold at once (`decode_cost`): 40 MP of RGB, greyscale or
                                # 16-bit greyscale; 4-band and 32-bit / float images up to ~33 MP
MAX_JPEG_SCANS = 100            # scans of a progressive JPEG (real photos: 1 to ~12); decoding time grows with each
FORMATS = "PNG, JPEG, GIF, BMP, TIFF, WebP"
_STRIP_PIXELS = 1 << 20         # pixels converted at a time
# bytes a pixel takes in Pillow's memory by mode (every other mode: 4, as Pillow pads 3 bands to 4)
_PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
_TRANSPOSE = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
              4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
              7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


class ImageError(ValueError):
    """An input that is not a usable image; the message says why, for the person who sent it."""


def open_image(source: str | Path | bytes, max_side: int | None = None, min_side: int = MIN_SIDE) -> Image.Image:
    """Open a file path or bytes and read only its header; refuse non-images, images over `MAX_PIXELS` or
    under `min_side`, and images whose decode would need more than `MAX_DECODE_BYTES`."""
    data = source if isinstance(source, bytes) else _read(Path(source))
    if data[:2] == b"\xff\xd8":
        check_scans(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:  # PIL's own size check
        raise ImageError(f"the image is too large; the limit is {MAX_PIXELS / 1e6:.0f} megapixels") from e
    except Exception as e:  # noqa: BLE001 - Pillow's plugins raise many types for a file that is not theirs
        raise ImageError(f"this file is not an image that can be read ({FORMATS})") from e
    check(img, max_side, min_side)
    return img


def check_scans(data: bytes) -> None:
    """Refuse a JPEG of more than MAX_JPEG_SCANS scans, counted in its bytes before anything is decoded (a
    start-of-scan marker, 0xFFDA, cannot occur inside scan data, where 0xFF is stuffed as 0xFF00): each scan
    of a progressive JPEG is a pass over the whole image, so a small file of thousands of tiny scans costs
    minutes of CPU."""
    scans = data.count(b"\xff\xda")
    if scans > MAX_JPEG_SCANS:
        raise ImageError(f"the JPEG has {scans} scans; the limit is {MAX_JPEG_SCANS} (photos have 1 to about 12): "
                         "save it again as a baseline JPEG or PNG")


def check(img: Image.Image, max_side: int | None = None, min_side: int = MIN_SIDE) -> None:
    """Raise ImageError if `img` (opened, not yet decoded) is too large, too small or too costly to decode."""
    width, height = img.size
    if width * height > MAX_PIXELS:
        raise ImageError(f"the image is {width} x {height} px; the limit is {MAX_PIXELS / 1e6:.0f} megapixels")
    if min(width, height) < min_side:
        raise ImageError(f"the image is {width} x {height} px; each side needs at least {min_side} px")
    try:
        cost = decode_cost(img, max_side)
    except Exception as e:  # noqa: BLE001 - a header whose fields do not parse
        raise ImageError("the image header is corrupt and cannot be read") from e
    if cost > MAX_DECODE_BYTES:
        raise ImageError(f"the image is {width} x {height} px in mode {img.mode} ({img.format or 'raw'}); "
                         f"decoding it would need ~{cost / 1e6:.0f} MB, the limit is "
                         f"{MAX_DECODE_BYTES / 1e6:.0f} MB; try a smaller image or save it as 8-bit RGB")


def decode_cost(img: Image.Image, max_side: int | None = None) -> int:
    """Bytes that decoding `img` and converting it to RGB hold at most, from its header alone: the image in
    its own mode, plus the larger of the decoder's raw buffer (TIFF: one strip or tile of samples) and the
    RGB result (none for an RGB image kept whole; smaller with `max_side`) with a strip of temporaries."""
    w, h = img.size
    factor = _factor(img.size, max_side)
    own = w * h * _PIXEL_BYTES.get(img.mode, 4)
    result = 0 if img.mode == "RGB" and factor == 1 else -(-w // factor) * -(-h // factor) * 4
    return own + max(_raw_buffer(img), result + 32 * _STRIP_PIXELS)  # a strip's temporaries: measured <= 28 B/px


def _raw_buffer(img: Image.Image) -> int:
    tags = getattr(img, "tag_v2", None)
    if img.format != "TIFF" or tags is None:
        return 0
    bits = tags.get(258, (8,))
    bits = sum(bits) if isinstance(bits, tuple) else int(bits) * int(tags.get(277, 1))
    w, h = img.size
    if 322 in tags and 323 in tags:   # tiles: TileWidth x TileLength
        unit = int(tags[322]) * int(tags[323])
    else:                             # strips: RowsPerStrip rows (by default the whole image)
        unit = w * min(h, int(tags.get(278, h)))
    return unit * bits // 8


def load_image(source: str | Path | bytes | Image.Image, *, max_side: int | None = None,
               min_side: int = MIN_SIDE) -> Image.Image:
    """Decode a file path, bytes or PIL image into an RGB image, refusing what is not safely usable:
    non-images, truncated or corrupt files, decompression bombs, tiny images, images too costly to decode.
    Animated images give their first frame. With `max_side`, the result's longer side is at most that."""
    if isinstance(source, Image.Image):
        img, owned = source, False
        check(img, max_side, min_side)
    else:
        img, owned = open_image(source, max_side, min_side), True
    try:
        img.seek(0)
        if max_side and img.format == "JPEG":
            w, h = img.size
            f = _factor(img.size, max_side)
            img.draft("RGB" if img.mode == "RGB" else None, (-(-w // f), -(-h // f)))
        img.load()
        orientation = _orientation(img)
        rgb = _convert(img, _factor(img.size, max_side))
    except ImageError:
        raise
    except MemoryError as e:
        raise ImageError("the image is too large to decode on this server") from e
    except Exception as e:  # noqa: BLE001 - Pillow raises many types (OSError, ValueError, SyntaxError...) for bad data
        raise ImageError("the image file is truncated or corrupt and cannot be decoded") from e
    if owned and rgb is not img:
        img.close()  # release the decoded pixels before the rotated copy is made
    return _orient(rgb, orientation)


def to_rgb(img: Image.Image, max_side: int | None = None) -> Image.Image:
    """8-bit RGB copy of a PIL image (or `img` itself when it is RGB already): EXIF rotation applied,
    transparency composited on white, 16-bit and 32-bit integer / float greyscale scaled to 0-255."""
    orientation = _orientation(img)
    return _orient(_convert(img, _factor(img.size, max_side)), orientation)


def _read(path: Path) -> bytes:
    try:
        size = path.stat().st_size if path.is_file() else None
        if size is not None and size <= MAX_BYTES:
            return path.read_bytes()
    except OSError as e:  # a name too long, a file that went away or cannot be read: say so without its path
        raise ImageError(f"the file {shown(path.name)} cannot be read ({e.strerror or type(e).__name__})") from e
    if size is None:
        raise ImageError(f"no image file at {shown(path.name)}")
    raise ImageError(f"the file is {size / 1e6:.0f} MB; the limit is {MAX_BYTES / 1e6:.0f} MB")


def _factor(size: tuple[int, int], max_side: int | None) -> int:
    return max(1, math.ceil(max(size) / max_side)) if max_side else 1


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - malformed EXIF must not make an image unusable; keep it unrotated
        return 1


def _orient(rgb: Image.Image, orientation: int) -> Image.Image:
    method = _TRANSPOSE.get(orientation)
    return rgb.transpose(method) if method is not None else rgb


def _convert(img: Image.Image, factor: int) -> Image.Image:
    """`img` as 8-bit RGB reduced by `factor`, converted a strip of rows at a time."""
    if img.mode == "RGB" and factor == 1:
        return img
    w, h = img.size
    scale = _scaling(img) if img.mode.startswith("I") or img.mode == "F" else None
    out = Image.new("RGB", (-(-w // factor), -(-h // factor)))
    rows = max(factor, _STRIP_PIXELS // max(w, 1) // factor * factor)
    for y in range(0, h, rows):
        strip = _strip_rgb(img.crop((0, y, w, min(h, y + rows))), scale)
        out.paste(strip.reduce(factor) if factor > 1 else strip, (0, y // factor))
    return out


def _scaling(img: Image.Image) -> tuple[float, float]:
    """(offset, gain) mapping a 16/32-bit integer or float image to 0-255, from its extrema (no copy)."""
    lo, hi = (float(v) for v in img.getextrema())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return 0.0, 1.0
    if img.mode.startswith("I;16") or (lo >= 0 and 255 < hi <= 65535):
        return 0.0, 1 / 257
    if img.mode == "F" and lo >= 0 and hi <= 1:
        return 0.0, 255.0
    if lo < 0 or hi > 255:
        return lo, 255 / max(hi - lo, 1e-12)
    return 0.0, 1.0


def _strip_rgb(strip: Image.Image, scale: tuple[float, float] | None) -> Image.Image:
    if scale is not None:
        a = np.asarray(strip, dtype=np.float32)
        a = np.nan_to_num((a - scale[0]) * scale[1], nan=0.0, posinf=255.0, neginf=0.0)
        return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L").convert("RGB")
    if strip.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in strip.info:
        rgba = strip.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return strip if strip.mode == "RGB" else strip.convert("RGB")
