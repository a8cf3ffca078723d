"""Tests for safe zip extraction, image-folder loading and RGB conversion."""

import io
import os
import stat
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from convformer.data.folders import DatasetError, FolderDataset, ImageFolderData, load_image_folder, safe_extract_zip
from convformer.data.images import to_rgb
from convformer.data.shapes import CLASSES, write_samples


def _png_bytes(colour=(200, 30, 30), size=(8, 6), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, colour).save(buf, "PNG")
    return buf.getvalue()


def _zip(path: Path, entries: dict, compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def _folder(root: Path, counts: dict[str, int]) -> Path:
    for cls, n in counts.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (10, 8), (i * 20, 100, 50)).save(root / cls / f"{i}.png")
    return root


# ---- safe_extract_zip -------------------------------------------------------------------

def test_good_zip_with_top_folder_returns_inner_root(tmp_path):
    z = _zip(tmp_path / "d.zip", {
        "data/cat/a.png": _png_bytes(), "data/cat/b.png": _png_bytes(),
        "data/dog/c.png": _png_bytes(), "data/dog/sub/d.png": _png_bytes(),
        "__MACOSX/data/cat/._a.png": b"junk", "data/.DS_Store": b"junk", "data/cat/.hidden": b"x",
    })
    root = safe_extract_zip(z, tmp_path / "out")
    assert root == (tmp_path / "out" / "data").resolve()
    assert not (tmp_path / "out" / "__MACOSX").exists()
    assert not (root / ".DS_Store").exists() and not (root / "cat" / ".hidden").exists()
    data = load_image_folder(root)
    assert data.classes == ["cat", "dog"] and data.counts() == {"cat": 2, "dog": 2}


def test_flat_zip_returns_dest(tmp_path):
    z = _zip(tmp_path / "d.zip", {"cat/a.png": _png_bytes(), "dog/b.png": _png_bytes()})
    assert safe_extract_zip(z, tmp_path / "out") == (tmp_path / "out").resolve()
    assert (tmp_path / "out" / "dog" / "b.png").read_bytes() == _png_bytes()


@pytest.mark.parametrize("name", ["../evil.txt", "cat/../../evil.txt", "/tmp/abs_evil.txt",
                                  "C:/evil.txt", "..\\evil.txt"])
def test_unsafe_paths_are_refused(tmp_path, name):
    z = _zip(tmp_path / "d.zip", {"cat/a.png": _png_bytes(), name: b"pwned"})
    with pytest.raises(DatasetError, match="evil"):
        safe_extract_zip(z, tmp_path / "out" / "inner")
    assert not (tmp_path / "out" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out" / "inner" / "cat" / "a.png").exists()  # nothing written at all


def test_symlink_entry_is_refused(tmp_path):
    z = tmp_path / "d.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("cat/a.png", _png_bytes())
        info = zipfile.ZipInfo("cat/link.png")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(DatasetError, match="link.png.*symbolic link"):
        safe_extract_zip(z, tmp_path / "out")


def test_zip_bomb_by_ratio_is_refused(tmp_path):
    z = _zip(tmp_path / "d.zip", {"cat/a.png": _png_bytes(), "cat/zeros.bmp": bytes(20_000_000)})
    assert z.stat().st_size < 100_000
    with pytest.raises(DatasetError, match="zeros.bmp.*zip bomb"):
        safe_extract_zip(z, tmp_path / "out")
    assert not (tmp_path / "out" / "cat" / "zeros.bmp").exists()


def test_total_size_limit(tmp_path):
    z = _zip(tmp_path / "d.zip", {f"c{i}/a.bin": os.urandom(600) for i in range(2)})
    with pytest.raises(DatasetError, match="max_total_bytes"):
        safe_extract_zip(z, tmp_path / "out", max_total_bytes=1000)
    assert safe_extract_zip(z, tmp_path / "ok", max_total_bytes=1200).is_dir()


def test_lying_declared_size_is_caught_and_cleaned_up(tmp_path):
    data = os.urandom(5000)
    z = _zip(tmp_path / "d.zip", {"cat/a.bin": b"fine", "cat/b.bin": data}, zipfile.ZIP_STORED)
    raw = bytearray(z.read_bytes())
    # Patch the uncompressed size in b.bin's central directory record to 100 bytes.
    cd = raw.index(b"PK\x01\x02", raw.index(b"PK\x01\x02") + 4)
    struct.pack_into("<I", raw, cd + 24, 100)
    z.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="b.bin|cannot extract"):
        safe_extract_zip(z, tmp_path / "out")
    assert not (tmp_path / "out" / "cat" / "a.bin").exists()  # partial output removed


def test_not_a_zip_and_missing_file(tmp_path):
    (tmp_path / "x.zip").write_bytes(b"definitely not a zip file")
    with pytest.raises(DatasetError, match="not a zip"):
        safe_extract_zip(tmp_path / "x.zip", tmp_path / "out")
    with pytest.raises(DatasetError, match="does not exist"):
        safe_extract_zip(tmp_path / "missing.zip", tmp_path / "out")


def test_too_many_entries(tmp_path):
    z = _zip(tmp_path / "d.zip", {f"cat/{i}.png": _png_bytes() for i in range(5)})
    with pytest.raises(DatasetError, match="5 entries.*max_files=3"):
        safe_extract_zip(z, tmp_path / "out", max_files=3)


def test_existing_file_is_not_overwritten_and_partial_output_removed(tmp_path):
    (tmp_path / "out" / "cat").mkdir(parents=True)
    (tmp_path / "out" / "cat" / "b.png").write_bytes(b"keep me")
    z = _zip(tmp_path / "d.zip", {"cat/a.png": _png_bytes(), "new/x.png": _png_bytes(),
                                  "cat/b.png": _png_bytes()})
    with pytest.raises(DatasetError, match="already exists"):
        safe_extract_zip(z, tmp_path / "out")
    assert (tmp_path / "out" / "cat" / "b.png").read_bytes() == b"keep me"
    assert not (tmp_path / "out" / "cat" / "a.png").exists() and not (tmp_path / "out" / "new").exists()


# ---- load_image_folder ------------------------------------------------------------------

def test_load_good_folder(tmp_path):
    data = load_image_folder(_folder(tmp_path / "d", {"b_dog": 3, "a_cat": 2}))
    assert data.classes == ["a_cat", "b_dog"]
    assert [(p.parent.name, y) for p, y in data.samples] == [("a_cat", 0)] * 2 + [("b_dog", 1)] * 3
    assert data.skipped == []


def test_too_few_images_per_class_names_the_class(tmp_path):
    root = _folder(tmp_path / "d", {"cat": 3, "dog": 1})
    with pytest.raises(DatasetError, match="'dog' has 1"):
        load_image_folder(root)
    assert len(load_image_folder(root, min_per_class=1).samples) == 4


def test_needs_two_class_folders_and_an_existing_root(tmp_path):
    with pytest.raises(DatasetError, match="at least 2 class"):
        load_image_folder(_folder(tmp_path / "one", {"cat": 3}))
    with pytest.raises(DatasetError, match="does not exist"):
        load_image_folder(tmp_path / "nope")


def test_undecodable_and_foreign_files_are_skipped(tmp_path):
    root = _folder(tmp_path / "d", {"cat": 2, "dog": 2})
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (root / "dog" / "notes.txt").write_text("hello")
    (root / "README.md").write_text("top-level file")
    data = load_image_folder(root)
    reasons = {p.name: r for p, r in data.skipped}
    assert "not an image that can be read" in reasons["broken.png"]
    assert "extension" in reasons["notes.txt"] and "class folder" in reasons["README.md"]
    assert data.counts() == {"cat": 2, "dog": 2}


def test_image_over_max_pixels_is_skipped(tmp_path):
    root = _folder(tmp_path / "d", {"cat": 2, "dog": 2})
    Image.new("L", (100, 100)).save(root / "cat" / "big.png")
    data = load_image_folder(root, max_pixels=5000)
    assert any(p.name == "big.png" and "max_pixels" in r for p, r in data.skipped)
    assert all(p.name != "big.png" for p, _ in data.samples)


def test_max_images(tmp_path):
    root = _folder(tmp_path / "d", {"cat": 2, "dog": 2})
    with pytest.raises(DatasetError, match="max_images=3"):
        load_image_folder(root, max_images=3)


def test_symlinks_out_of_root_are_not_followed(tmp_path):
    outside = _folder(tmp_path / "outside", {"secret": 3})
    root = _folder(tmp_path / "d", {"cat": 2, "dog": 2})
    os.symlink(outside / "secret", root / "linked_class")
    os.symlink(outside / "secret", root / "cat" / "linked_dir")
    os.symlink(outside / "secret" / "0.png", root / "dog" / "linked.png")
    data = load_image_folder(root)
    assert data.classes == ["cat", "dog"] and data.counts() == {"cat": 2, "dog": 2}
    assert {p.name for p, _ in data.skipped} == {"linked_class", "linked_dir", "linked.png"}
    assert all("outside" not in str(p.resolve()) for p, _ in data.samples)


def test_shapes_samples_load_as_a_folder(tmp_path):
    write_samples(tmp_path / "s", per_class=2, img_size=32)
    data = load_image_folder(tmp_path / "s")
    assert data.classes == sorted(CLASSES) and len(data.samples) == 2 * len(CLASSES)


# ---- to_rgb and FolderDataset -----------------------------------------------------------

def test_to_rgb_16bit_greyscale_is_scaled():
    img = Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.uint16))
    assert img.mode == "I;16"
    out = to_rgb(img)
    assert out.mode == "RGB" and np.asarray(out)[0, :, 0].tolist() == [0, 128, 255]
    dark = Image.fromarray(np.array([[0, 128, 255]], dtype=np.uint16))  # very dark, still 16-bit
    assert np.asarray(to_rgb(dark))[0, :, 0].tolist() == [0, 0, 1]


def test_to_rgb_32bit_int_greyscale_is_scaled():
    img = Image.fromarray(np.array([[0, 65535]], dtype=np.int32), "I")
    assert np.asarray(to_rgb(img))[0, :, 1].tolist() == [0, 255]


def test_to_rgb_alpha_composites_on_white():
    rgba = Image.new("RGBA", (2, 1), (255, 0, 0, 0))
    rgba.putpixel((1, 0), (0, 0, 0, 128))
    out = np.asarray(to_rgb(rgba))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert all(abs(v - 127) <= 2 for v in out[0, 1])
    la = Image.new("LA", (1, 1), (0, 0))
    assert np.asarray(to_rgb(la))[0, 0].tolist() == [255, 255, 255]


def test_to_rgb_palette_with_transparency():
    p = Image.new("P", (2, 1), 0)
    p.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    p.putpixel((1, 0), 1)
    p.info["transparency"] = 0
    assert np.asarray(to_rgb(p))[0].tolist() == [[255, 255, 255], [10, 200, 30]]


def test_to_rgb_cmyk():
    out = to_rgb(Image.new("CMYK", (1, 1), (255, 0, 0, 0)))
    assert out.mode == "RGB" and np.asarray(out)[0, 0].tolist() == [0, 255, 255]


def test_to_rgb_applies_exif_orientation():
    img = Image.new("RGB", (20, 10), (0, 0, 255))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    buf = io.BytesIO()
    img.save(buf, "PNG", exif=exif)
    with Image.open(io.BytesIO(buf.getvalue())) as reopened:
        assert to_rgb(reopened).size == (10, 20)


def test_folder_dataset_returns_rgb_and_labels(tmp_path):
    root = _folder(tmp_path / "d", {"cat": 2, "dog": 2})
    Image.new("RGBA", (5, 5), (0, 0, 0, 0)).save(root / "dog" / "clear.png")
    data = load_image_folder(root)
    ds = FolderDataset(data, transform=lambda im: np.asarray(im))
    assert len(ds) == 5 and ds.classes == ["cat", "dog"] and ds.targets == [0, 0, 1, 1, 1]
    idx = [p.name for p, _ in ds.samples].index("clear.png")
    x, y = ds[idx]
    assert y == 1 and x.shape == (5, 5, 3) and (x == 255).all()


def test_folder_dataset_reports_a_file_broken_after_loading(tmp_path):
    root = _folder(tmp_path / "d", {"cat": 2, "dog": 2})
    data = load_image_folder(root)
    data.samples[0][0].write_bytes(b"gone bad")
    with pytest.raises(DatasetError, match="cannot read image"):
        FolderDataset(data)[0]
    assert isinstance(FolderDataset(ImageFolderData(["a"], [])).classes, list)


# ---- Cancel and the time limit cover loading; limits per image before decoding; short messages -----------
def test_cancel_stops_extraction_and_leaves_nothing(tmp_path):
    import threading
    from convformer.data.folders import LoadingStopped, Stop
    z = _zip(tmp_path / "d.zip", {f"cat/{i}.png": _png_bytes() for i in range(20)})
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(LoadingStopped, match=r"cancelled while extracting the zip \(0 of 20 files done\)"):
        safe_extract_zip(z, tmp_path / "out", stop=Stop(cancel))
    assert not any(p.is_file() for p in (tmp_path / "out").rglob("*"))


def test_time_limit_stops_the_scan_and_the_decoding_per_image(tmp_path):
    import threading
    from convformer.data.folders import LoadingStopped, Stop
    root = _folder(tmp_path / "d", {"cat": 3, "dog": 3})
    with pytest.raises(LoadingStopped, match="time limit was reached while checking images"):
        load_image_folder(root, stop=Stop.after(-1))
    cancel = threading.Event()
    seen = []

    def transform(img):  # the Cancel button, pressed while the third image is decoded
        seen.append(img)
        if len(seen) == 3:
            cancel.set()
        return img
    ds = FolderDataset(load_image_folder(root), transform, stop=Stop(cancel))
    with pytest.raises(LoadingStopped, match=r"cancelled while loading images \(3 of 6 done\)"):
        [ds[i] for i in range(len(ds))]
    assert len(seen) == 3


def test_images_over_the_decode_limits_are_skipped_from_their_header(tmp_path):
    from tests._corpus import png_declaring
    root = _folder(tmp_path / "d", {"cat": 2, "dog": 2})
    (root / "cat" / "huge.png").write_bytes(png_declaring(100_000, 100_000))
    (root / "cat" / "wide.png").write_bytes(png_declaring(6000, 6000))  # 36 MP declared, no rows: corrupt
    data = load_image_folder(root)
    reasons = {p.name: r for p, r in data.skipped}
    assert "too large" in reasons["huge.png"] and "wide.png" not in reasons  # its header is within limits
    assert data.counts() == {"cat": 3, "dog": 2}
    with pytest.raises(DatasetError, match="cannot read image 'wide.png': the image file is truncated"):
        FolderDataset(data)[[p.name for p, _ in data.samples].index("wide.png")]


def test_folder_dataset_decodes_at_most_max_side(tmp_path):
    root = tmp_path / "d"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (1200, 900), (i * 90, 10, 10)).save(root / cls / f"{i}.jpg")
    ds = FolderDataset(load_image_folder(root), max_side=128)
    img, _ = ds[0]
    assert max(img.size) <= 128 and img.size[0] > img.size[1]


def test_messages_cut_long_names_and_show_no_server_path(tmp_path):
    name = "x" * 5000 + ".png"
    z = _zip(tmp_path / "d.zip", {f"cat/{name}": b"1", f"../{name}": b"2"})
    with pytest.raises(DatasetError) as info:
        safe_extract_zip(z, tmp_path / "out")
    assert len(str(info.value)) < 300 and "characters)" in str(info.value)
    assert str(tmp_path) not in str(info.value)
    with pytest.raises(DatasetError) as info:
        load_image_folder(tmp_path / ("y" * 5000))
    assert len(str(info.value)) < 300 and str(tmp_path) not in str(info.value)
