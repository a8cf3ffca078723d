"""A bad-input corpus, generated on the fly (no committed binaries): images, checkpoints and zips that a
stranger could send, each with what the app must do with it.

`images(dir)` and `checkpoints(dir, marker)` write files and return {name: (path, ok)}: ok=True means the
input is valid-but-unusual and must succeed, ok=False means it must be refused with a clear message.
Used by tests/test_robustness.py and scripts/soak.py.
"""
from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_declaring(width: int, height: int, rows: int = 0) -> bytes:
    """An 8-bit greyscale PNG whose header declares width x height; `rows` rows of zeros are really encoded
    (all of them for a genuine huge image, none for a header that lies)."""
    z, chunks = zlib.compressobj(9), []
    row = b"\0" * (width + 1)
    for _ in range(rows):
        chunks.append(z.compress(row))
    chunks.append(z.flush())
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + _png_chunk(b"IDAT", b"".join(chunks)) + _png_chunk(b"IEND", b""))


def tiff_declaring(width: int, height: int, bits: int = 32, sample_format: int = 3) -> bytes:
    """A little-endian TIFF header declaring one greyscale strip of width x height 32-bit floats; no data."""
    tags = [(256, 4, width), (257, 4, height), (258, 3, bits), (259, 3, 1), (262, 3, 1), (273, 4, 8),
            (277, 3, 1), (278, 4, height), (279, 4, width * height * bits // 8), (339, 3, sample_format)]
    ifd = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<HHII", t, kind, 1, v) if kind == 4 else struct.pack("<HHIHH", t, kind, 1, v, 0)
        for t, kind, v in tags)
    return b"II*\0" + struct.pack("<I", 8) + ifd + b"\0\0\0\0"


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _photo(w: int = 96, h: int = 64) -> Image.Image:
    """A picture with structure (a gradient and a bright square), so rotation is visible."""
    a = np.zeros((h, w, 3), np.uint8)
    a[..., 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    a[..., 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    a[4:20, 4:20] = 255
    return Image.fromarray(a, "RGB")


def exif_rotated_jpeg() -> bytes:
    """A 96 x 64 JPEG with EXIF orientation 6 (rotate 90 degrees clockwise to display): shown as 64 x 96."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(_photo(), "JPEG", exif=exif.tobytes())


def animated_gif() -> bytes:
    frames = [Image.new("P", (48, 48), i * 40) for i in range(4)]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)


def images(folder: Path) -> dict[str, tuple[Path, bool]]:
    """Write the image corpus into `folder`: name -> (path, must succeed)."""
    photo = _photo()
    png = _save(photo, "PNG")
    jpeg = _save(photo, "JPEG", quality=90)
    corrupt = bytearray(png)
    idat = corrupt.find(b"IDAT") + 4
    corrupt[idat:idat + 64] = bytes(range(64))            # garbage in the compressed data
    short_ihdr = png[:8] + struct.pack(">I", 5) + b"IHDR" + png[16:21] + png[33:]  # IHDR of 5 bytes, not 13
    cases: dict[str, tuple[str, bytes, bool]] = {
        # valid but unusual: must work
        "rgb.png": ("rgb.png", png, True),
        "progressive.jpg": ("progressive.jpg", _save(photo, "JPEG", progressive=True, optimize=True), True),
        "exif_rotated.jpg": ("exif_rotated.jpg", exif_rotated_jpeg(), True),
        "16bit.png": ("16bit.png", _save(Image.fromarray(
            (np.arange(64 * 64).reshape(64, 64) * 15).astype(np.uint16)), "PNG"), True),
        "cmyk.jpg": ("cmyk.jpg", _save(photo.convert("CMYK"), "JPEG"), True),
        "palette.png": ("palette.png", _save(photo.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"), True),
        "animated.gif": ("animated.gif", animated_gif(), True),
        "rgba.png": ("rgba.png", _save(photo.convert("RGBA"), "PNG"), True),
        "greyscale_alpha.png": ("la.png", _save(photo.convert("LA"), "PNG"), True),
        "1bit.bmp": ("1bit.bmp", _save(photo.convert("1"), "BMP"), True),
        "float.tiff": ("float.tiff", _save(Image.fromarray(np.linspace(0, 1, 64 * 64, dtype=np.float32)
                                                            .reshape(64, 64), "F"), "TIFF"), True),
        "lossless.webp": ("lossless.webp", _save(photo, "WEBP", lossless=True), True),
        "tall_thin.png": ("tall_thin.png", _save(Image.new("RGB", (8, 3000), "red"), "PNG"), True),
        # refused with a clear message
        "empty.png": ("empty.png", b"", False),
        "text_renamed.png": ("notes.png", b"just some text, renamed to .png\n" * 20, False),
        "svg.svg": ("drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
                                   b'<rect width="64" height="64" fill="red"/></svg>', False),
        "html_renamed.png": ("page.png", b"<!doctype html><html><body><script>alert(1)</script></body></html>",
                             False),
        "truncated.png": ("truncated.png", png[: len(png) // 2], False),
        "truncated.jpg": ("truncated.jpg", jpeg[: len(jpeg) // 3], False),
        "corrupt.png": ("corrupt.png", bytes(corrupt), False),
        "1x1.png": ("1x1.png", _save(Image.new("RGB", (1, 1)), "PNG"), False),
        "20000x20000.png": ("huge.png", png_declaring(20000, 20000, rows=20000), False),
        "declares_100000x100000.png": ("lies.png", png_declaring(100_000, 100_000), False),
        "declares_7000x7000.png": ("big.png", png_declaring(7000, 7000), False),
        "short_ihdr.png": ("short_ihdr.png", short_ihdr, False),
        "declares_40mp_float.tiff": ("float40.tiff", tiff_declaring(6300, 6300), False),
        "long_name.png": ("n" * 200 + ".png", b"not an image, and a long name\n", False),
        "many_scans.jpg": ("scans.jpg", many_scans_jpeg(), False),  # round three: refused before decoding
    }
    out = {}
    for key, (name, data, ok) in cases.items():
        path = folder / name
        path.write_bytes(data)
        out[key] = (path, ok)
    return out


# ---- checkpoints ---------------------------------------------------------------------------------------
class _Payload:
    """Unpickling this creates `marker` (open(marker, "w")): proof that a pickle was executed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _safetensors_raw(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def checkpoints(folder: Path, marker: Path, good: Path, other: Path) -> dict[str, Path]:
    """Write bad checkpoints into `folder`, all refused but hostile_classes (valid, its names must show as
    text): name -> path. `good` is a valid checkpoint of the
    configuration the test runs with; `other` one of a different configuration."""
    from safetensors import safe_open
    with safe_open(str(good), framework="pt") as f:
        meta = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}
    first = sorted(state)[0]
    pickled = pickle.dumps({"state_dict": _Payload(marker)})
    cases: dict[str, bytes | None] = {
        "pickle_disguised.safetensors": pickled,
        "empty.safetensors": b"",
        "random_bytes.safetensors": bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)),
        "truncated_header.safetensors": good.read_bytes()[:40],
        "header_length_lies.safetensors": struct.pack("<Q", 10**12) + b"{}",
        "offsets_lie.safetensors": _safetensors_raw(
            {"__metadata__": meta, first: {"dtype": "F32", "shape": [1024, 1024], "data_offsets": [0, 4194304]}},
            b"\0" * 64),
        "truncated_data.safetensors": good.read_bytes()[: good.stat().st_size - 256],
        "other_config.safetensors": other.read_bytes(),
        "no_config.safetensors": None,
        "bad_json_config.safetensors": None,
        "absurd_config.safetensors": None,
        "wrong_dtype.safetensors": None,
        "wrong_shapes.safetensors": None,
        "classes_mismatch.safetensors": None,
        "meta_not_a_mapping.safetensors": None,
        "header_is_a_list.safetensors": None,
        "huge_classifier.safetensors": None,   # 100,000 classes declared, no tensors: nothing may be built
        "nested_header.safetensors": None,
        "other_fusion.safetensors": None,
        "in_chans_4.safetensors": None,
        "degenerate_std.safetensors": None,
        "empty_objects.safetensors": None,     # round three: 1.5 MB of {} in the metadata, refused before parsing
        "hostile_classes.safetensors": None,   # round three: valid; its class names are links and forms
    }
    out = {}
    for name, data in cases.items():
        path = folder / name
        if data is not None:
            path.write_bytes(data)
        elif name == "no_config.safetensors":
            save_file(state, str(path))
        elif name == "bad_json_config.safetensors":
            save_file(state, str(path), metadata={"convformer": "{not json", "format": "pt"})
        elif name == "absurd_config.safetensors":
            info = json.loads(meta["convformer"])
            info["config"].update(depth=10**6, embed_dim=10**7, img_size=[10**5, 10**5])
            save_file(state, str(path), metadata={"convformer": json.dumps(info), "format": "pt"})
        elif name == "wrong_dtype.safetensors":
            save_file({k: v.to(torch.int32) if v.is_floating_point() else v for k, v in state.items()}, str(path),
                      metadata=meta)
        elif name == "wrong_shapes.safetensors":
            save_file({k: torch.zeros(tuple(s + 1 for s in v.shape)) for k, v in state.items()}, str(path),
                      metadata=meta)
        elif name in ("classes_mismatch.safetensors", "meta_not_a_mapping.safetensors"):
            info = json.loads(meta["convformer"])
            info["meta"] = {"classes": ["only", "two"]} if name.startswith("classes") else "not a mapping"
            save_file(state, str(path), metadata={"convformer": json.dumps(info), "format": "pt"})
        elif name == "header_is_a_list.safetensors":
            save_file(state, str(path), metadata={"convformer": "[1, 2, 3]", "format": "pt"})
        elif name == "huge_classifier.safetensors":
            info = json.loads(meta["convformer"])
            info["config"].update(num_classes=100_000)
            info["meta"] = {}
            save_file({}, str(path), metadata={"convformer": json.dumps(info), "format": "pt"})
        elif name == "empty_objects.safetensors":
            empty_objects_header(good, path, megabytes=1.5)
        elif name == "hostile_classes.safetensors":
            hostile_classes_checkpoint(good, path)
        elif name == "nested_header.safetensors":
            save_file(state, str(path), metadata={"convformer": "[" * 100_000 + "]" * 100_000, "format": "pt"})
        else:  # a real model of another fusion stage, of 4 input channels, or with a degenerate std
            from convformer.export.checkpoint import save_checkpoint
            from convformer.config import ConvFormerConfig
            from convformer.model import ConvFormer
            cfg = ConvFormerConfig.from_dict(json.loads(meta["convformer"])["config"])
            change = {"other_fusion.safetensors": dict(fusion="cnn", pool="avg"),
                      "in_chans_4.safetensors": dict(in_chans=4),
                      "degenerate_std.safetensors": dict(std=(1e-9, 1e-9, 1e-9))}[name]
            save_checkpoint(ConvFormer(cfg.replace(**change)), path)
        out[name] = path
    path = folder / "pickle.pt"                # the extension a real pickle has: refused by name too
    path.write_bytes(pickled)
    out["pickle.pt"] = path
    return out


# ---- zips ----------------------------------------------------------------------------------------------
def zips(folder: Path) -> dict[str, Path]:
    """Hostile zips, all refused by safe_extract_zip: name -> path."""
    out = {}

    def write(name: str, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> None:
        path = folder / name
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for info, data in entries:
                zf.writestr(info, data)
        out[name] = path

    write("bomb.zip", [("a/zeros.png", b"\0" * 50_000_000)])
    write("dotdot.zip", [("a/ok.png", _save(_photo(), "PNG")), ("../../escaped.png", b"x")])
    write("absolute.zip", [("/tmp/absolute.png", b"x")])
    link = zipfile.ZipInfo("a/link.png")
    link.external_attr = (0o120777 << 16)
    write("symlink.zip", [(link, b"/etc/passwd")])
    write("many_entries.zip", [(f"a/{i}.png", b"") for i in range(300)])
    (folder / "not_a.zip").write_bytes(b"PK\x03\x04 not really a zip")
    out["not_a.zip"] = folder / "not_a.zip"
    return out


# ---- round three (issue 28): cheap requests that cost the server, and text that must stay text -------------
HOSTILE_NAMES = (  # class names, preset and file names, query values: each must reach the page as text
    '<a href="https://example.invalid/login">Log in</a>',
    '<form action="https://example.invalid/steal"><input type="password" name="p"><button>Sign in</button></form>',
    "[Log in](https://example.invalid/login)",
    '"""\nimport os; open("PWNED", "w")\n"""',
    "x\\\"\"\"; raise SystemExit('injected') #",
    "@TITLE@ @FUSION@",
    "line\u2028separator\x00nul",
)


def many_scans_jpeg(width: int = 64, height: int = 64, repeats: int = 2000) -> bytes:
    """A progressive JPEG whose smallest scan is repeated `repeats` times before its end: a few hundred KB that
    a decoder runs over the whole image once per scan (8000 x 5000 x 2000: 8-15 s of CPU on main)."""
    a = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    data = _save(Image.fromarray(a, "RGB"), "JPEG", progressive=True, quality=20)
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xDA]
    ends = starts[1:] + [data.rindex(b"\xff\xd9")]
    # each scan runs to the next marker (a DHT table may sit between scans: the scan ends before it)
    scans = []
    for s, e in zip(starts, ends):
        stop = s + 2
        while stop < e and not (data[stop] == 0xFF and data[stop + 1] not in (0x00, *range(0xD0, 0xD8))):
            stop += 1
        scans.append(data[s:stop])
    smallest = min(scans, key=len)
    end = data.rindex(b"\xff\xd9")
    return data[:end] + smallest * repeats + data[end:]


def empty_objects_header(good: Path, path: Path, megabytes: float = 6) -> Path:
    """A valid tiny checkpoint whose metadata is `megabytes` MB of empty JSON objects ({} {} ...)."""
    from safetensors import safe_open
    with safe_open(str(good), framework="pt") as f:
        meta = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}
    info = json.loads(meta["convformer"])
    info["meta"]["padding"] = [{}] * int(megabytes * 2**20 / 4)
    save_file(state, str(path), metadata={"convformer": json.dumps(info), "format": "pt"})
    return path


def hostile_classes_checkpoint(good: Path, path: Path) -> Path:
    """`good` with its class names replaced by HOSTILE_NAMES (as many as it has classes) and a hostile dataset."""
    from safetensors import safe_open
    with safe_open(str(good), framework="pt") as f:
        meta = f.metadata()
        state = {k: f.get_tensor(k) for k in f.keys()}
    info = json.loads(meta["convformer"])
    n = info["config"]["num_classes"]
    info["meta"]["classes"] = [HOSTILE_NAMES[i % 3] + str(i) for i in range(n)]
    info["meta"]["dataset"] = HOSTILE_NAMES[1]
    save_file(state, str(path), metadata={"convformer": json.dumps(info), "format": "pt"})
    return path


def dataset_zips(folder: Path) -> dict[str, Path]:
    """Training zips that look usable but were accepted, then refused (main), or refused clumsily: name -> path.
    long_class: a class folder of 255 characters; nfc_nfd: one name spelled NFC and NFD (one class);
    truncated_jpeg: one JPEG cut short among good ones (skipped); deep: one file under 1,500 folders."""
    import unicodedata
    png = _save(_photo(16, 16), "PNG")
    jpeg = _save(_photo(96, 64), "JPEG", quality=95)
    out = {}

    def write(name: str, entries: list[tuple[str, bytes]]) -> None:
        path = folder / name
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for entry, data in entries:
                zf.writestr(entry, data)
        out[name] = path

    good = [(f"b/{i}.png", png) for i in range(3)]
    write("long_class.zip", [(f"{'c' * 255}/{i}.png", png) for i in range(3)] + good)
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    write("nfc_nfd.zip", [(f"{nfc}/0.png", png), (f"{nfd}/1.png", png)] + good)
    write("truncated_jpeg.zip", [(f"a/{i}.jpg", jpeg) for i in range(3)] + [("a/cut.jpg", jpeg[: len(jpeg) - 400])]
          + good)
    write("deep.zip", [("a/" + "d/" * 1500 + "0.png", png)] + good)
    return out
