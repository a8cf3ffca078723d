"""Time and memory of the cheap requests of issue 28, each in a fresh process, against this checkout or another
(`--root`, e.g. a worktree of an older main), so before and after are measured in the same run:

    python scripts/measure_hostile.py                       # this checkout
    python scripts/measure_hostile.py --root /tmp/old-main  # another one, with this script's corpus

Each item prints: seconds spent in the request, MB the process still holds after it (RSS growth, after
gc), and what came back. Items: translate (a refusal of a 16 KB '=a=a...' value, page in Chinese),
scans (an 8000 x 5000 progressive JPEG, its smallest scan repeated 2,000 times, decoded as the app does),
header (a tiny checkpoint with 6 MB of empty JSON objects, read as the app does), code (/code for the
largest slider configuration), echo (a 1 MB value sent to /check_config: the status line's length).
"""
from __future__ import annotations

import argparse
import gc
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
ITEMS = ("translate", "scans", "header", "code", "echo")


def rss() -> float:
    import psutil
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def scans_jpeg() -> bytes:
    """8000 x 5000, progressive, its smallest scan repeated 2,000 times (a few hundred KB)."""
    import numpy as np
    from PIL import Image
    y, x = np.mgrid[0:5000, 0:8000]
    a = np.stack([(x // 40) % 256, (y // 40) % 256, ((x + y) // 80) % 256], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a, "RGB").save(buf, "JPEG", progressive=True, quality=5)
    data = buf.getvalue()
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xDA]
    end = data.rindex(b"\xff\xd9")
    scans = [data[s:e] for s, e in zip(starts, starts[1:] + [end])]
    smallest = min(scans, key=len)
    return data[:end] + smallest * 2000 + data[end:]


def run(item: str) -> dict:
    sys.path.insert(0, os.getcwd())
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    small = dict(fusion="mid", preset="convformer_mid_tiny", img_size=64, embed_dim=32, depth=2, num_heads=2,
                 mlp_ratio=2.0, patch_size=8, conv_widths="16, 32", conv_depths="1, 1", merge="concat",
                 weights="random", checkpoint=None)
    from convformer_app import i18n
    from convformer_app.controls import Controls
    names = Controls.names()
    work = Path(tempfile.mkdtemp())
    prepared: dict = {}
    if item == "scans":
        prepared["data"] = scans_jpeg()
    if item == "header":
        import torch  # noqa: F401
        from convformer.export.checkpoint import save_checkpoint
        from convformer.model import ConvFormer
        cfg = Controls(**small).config()
        good = save_checkpoint(ConvFormer(cfg), work / "good.safetensors", classes=[f"c{i}" for i in range(10)])
        from safetensors import safe_open
        from safetensors.torch import save_file
        with safe_open(str(good), framework="pt") as f:
            meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
        info = json.loads(meta["convformer"])
        info["meta"]["padding"] = [{}] * (6 * 2**20 // 4)
        prepared["path"] = work / "objects.safetensors"
        save_file(state, str(prepared["path"]), metadata={"convformer": json.dumps(info), "format": "pt"})
        del state, info
    from convformer_app import weights  # noqa: F401 - imported before the baseline
    from convformer_app.explore import handlers as explore
    before = rss()
    start = time.perf_counter()
    if item == "translate":
        value = "=a" * 8000
        out = i18n.translate(f"conv_widths={value!r} is not allowed: expected a whole number", "zh-CN")
    elif item == "scans":
        from convformer.data import images
        try:
            out = images.load_image(prepared["data"], max_side=2048).size
        except images.ImageError as e:
            out = str(e)
    elif item == "header":
        controls = Controls(**dict(small, weights="upload", checkpoint=str(prepared["path"])))
        out = weights.resolve(controls).notice[:120]
    elif item == "code":
        largest = dict(small, fusion="vit", preset="convformer_vit_tiny", img_size=224, embed_dim=768, depth=24,
                       num_heads=16, mlp_ratio=8.0, patch_size=16)
        out = len(explore.code(*[largest[k] for k in names])[0])
    else:  # echo
        token = i18n.LANG.set("en")
        out = len(explore.check_config(*[dict(small, conv_widths="=a" * 500_000)[k] for k in names]))
        i18n.LANG.reset(token)
    seconds = time.perf_counter() - start
    return {"item": item, "seconds": round(seconds, 3), "held_mb": round(rss() - before, 1),
            "out": str(out)[:160]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(HERE), help="the checkout to measure (default: this one)")
    parser.add_argument("--item", choices=ITEMS, help="one item, in this process (used by the loop below)")
    args = parser.parse_args()
    if args.item:
        print(json.dumps(run(args.item)))
        return
    for item in ITEMS:
        proc = subprocess.run([sys.executable, __file__, "--item", item], cwd=args.root, capture_output=True,
                              text=True, timeout=900)
        print(proc.stdout.strip().splitlines()[-1] if proc.returncode == 0 else
              json.dumps({"item": item, "error": proc.stderr.strip().splitlines()[-1:]}), flush=True)


if __name__ == "__main__":
    main()
