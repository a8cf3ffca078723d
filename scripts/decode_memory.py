"""Peak memory of decoding one large image with convformer.data.images.load_image, per kind of image.

Each image is written once (a gradient, compressed), then decoded in a fresh process that imports only
images.py (no torch), and the growth of its peak resident memory is reported with images.decode_cost.

    python scripts/decode_memory.py              # 6300 x 6300 (40 MP)
    python scripts/decode_memory.py --side 4000 --max-side 1024
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
MEASURE = """
import io, sys, types
sys.modules["convformer"] = types.ModuleType("convformer")  # images.py alone
sys.modules["convformer"].__path__ = [sys.argv[1]]
from PIL import Image
from convformer.data.images import ImageError, decode_cost, load_image
data = open(sys.argv[2], "rb").read()
side = int(sys.argv[3]) or None
cost = decode_cost(Image.open(io.BytesIO(data)), side)
def hwm():  # peak resident memory of this process (kB); ru_maxrss would carry the parent's over exec
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
open("/proc/self/clear_refs", "w").write("5")  # the peak starts again from here
before = hwm()
try:
    out = "x".join(map(str, load_image(data, max_side=side).size))
except ImageError as e:
    out = f"refused: {e}"
print((hwm() - before) * 1024, cost, out)
"""


def images(folder: Path, side: int) -> dict[str, Path]:
    g = (np.add.outer(np.arange(side), np.arange(side)) % 65536).astype(np.uint16)
    rgb = np.stack([(g % 256).astype(np.uint8)] * 3, -1)
    made = {"16-bit grey PNG": (Image.fromarray(g), "png", {}),
            "float TIFF": (Image.fromarray((g / 65535).astype(np.float32)), "tiff",
                           {"compression": "tiff_adobe_deflate"}),
            "RGB PNG": (Image.fromarray(rgb), "png", {}), "RGB JPEG": (Image.fromarray(rgb), "jpg", {"quality": 80}),
            "RGBA PNG": (Image.fromarray(np.dstack([rgb, rgb[..., :1]])), "png", {})}
    out = {}
    for name, (img, ext, kw) in made.items():
        path = folder / f"{name.replace(' ', '_')}.{ext}"
        img.save(path, **kw)
        out[name] = path
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--side", type=int, default=6300)
    p.add_argument("--max-side", type=int, default=0, help="load_image(max_side=...); 0: full size")
    args = p.parse_args()
    pixels = args.side ** 2
    print(f"{args.side} x {args.side} = {pixels / 1e6:.1f} MP, max_side={args.max_side or None}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in images(Path(tmp), args.side).items():
            run = subprocess.run([sys.executable, "-c", MEASURE, str(ROOT / "convformer"), str(path),
                                  str(args.max_side)], capture_output=True, text=True, check=True)
            peak, cost, out = run.stdout.split(" ", 2)
            print(f"{name:16s} peak +{int(peak) / 1e6:5.0f} MB ({int(peak) / pixels:4.1f} B/px)  "
                  f"decode_cost {int(cost) / 1e6:5.0f} MB  -> {out.strip()[:90]}")


if __name__ == "__main__":
    main()
