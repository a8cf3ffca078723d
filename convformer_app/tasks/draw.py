"""Pure pictures for detection and segmentation: numpy / PIL in, PIL out (no Gradio, no torch).

Colours come from matplotlib's qualitative colormaps (tab10, then tab20 for more classes), one per class, the
same in the boxes, the mask and the legend. Boxes are xyxy in the pixels of the image they are drawn on
(`scale_boxes` maps them from the original image). Segmentation class 0 is the background: left untinted.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

Colour = tuple[int, int, int]


def palette(n: int) -> list[Colour]:
    """`n` distinct colours (tab10 for up to 10, tab20 up to 20, then repeating), as RGB bytes."""
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [tuple(int(c * 255) for c in cmap(i % cmap.N)[:3]) for i in range(max(n, 1))]


@functools.lru_cache(maxsize=8)
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at `size` px (no system font needed)."""
    return ImageFont.load_default(size=size)


def text_colour(background: Colour) -> Colour:
    """Black or white, whichever reads better on `background` (by luma)."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


def scale_boxes(boxes: np.ndarray, scale: float) -> np.ndarray:
    """xyxy boxes (N, 4) in one image's pixels -> those of the image resized by `scale`."""
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * float(scale)


def resized(image: Image.Image, long_side: int) -> tuple[Image.Image, float]:
    """(the RGB image with `long_side` px on its long side, the scale applied)."""
    scale = long_side / max(image.size)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.convert("RGB").resize(size, Image.Resampling.BICUBIC), scale


def draw_boxes(image: Image.Image, boxes: np.ndarray, labels: Sequence[int], captions: Sequence[str],
               colours: Sequence[Colour], selected: int | None = None) -> Image.Image:
    """The image with each box (xyxy, this image's pixels) outlined in its class colour and captioned
    ("square 0.93"); box `selected` drawn thicker and the others faded, so a clicked box stands out."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out, "RGBA")
    side = max(out.size)
    width, size = max(2, round(side / 200)), max(11, round(side / 32))
    order = [i for i in range(len(boxes)) if i != selected] + ([selected] if selected is not None else [])
    placed: list[tuple[float, float, float, float]] = []  # the captions drawn so far: none covers another
    for i in order:
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        colour = tuple(colours[int(labels[i]) % len(colours)])
        faded = selected is not None and i != selected
        alpha = 110 if faded else 255
        draw.rectangle([x1, y1, x2, y2], outline=(*colour, alpha), width=width * (2 if i == selected else 1))
        caption = captions[i]
        left, top, right, bottom = draw.textbbox((0, 0), caption, font=font(size))
        tw, th = right - left, bottom - top
        tx = min(max(x1, 0), max(0, out.width - tw - 4))
        ty = _free_row(placed, tx, tw + 4, th + 4, y1 - th - 4 if y1 - th - 4 >= 0 else y1, out.height)
        placed.append((tx, ty, tx + tw + 4, ty + th + 4))
        draw.rectangle([tx, ty, tx + tw + 4, ty + th + 4], fill=(*colour, alpha))
        draw.text((tx + 2 - left, ty + 2 - top), caption, fill=(*text_colour(colour), alpha), font=font(size))
    return out


def _free_row(placed: Sequence[tuple[float, float, float, float]], x: float, w: float, h: float, y: float,
              limit: int) -> float:
    """The first top edge from `y` down (in steps of a caption's height) where a caption w x h at x overlaps
    none of `placed` (above its box, else inside it at the top edge, else lower)."""
    def free(top: float) -> bool:
        return not any(x < x2 and x1 < x + w and top < y2 and y1 < top + h for x1, y1, x2, y2 in placed)
    top = y
    while not free(top) and top + 2 * h <= limit:
        top += h
    return top


def legend(entries: Sequence[tuple[str, Colour]], width: int, size: int = 13) -> Image.Image:
    """A strip `width` px wide: a colour swatch and a name per entry, wrapped onto as many rows as needed."""
    pad, swatch = 6, size
    f = font(size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    items, x, y, rows = [], pad, pad, 1
    for name, colour in entries:
        w = swatch + 4 + round(measure.textlength(name, font=f)) + 2 * pad
        if x + w > width and x > pad:
            x, y, rows = pad, y + size + pad, rows + 1
        items.append((x, y, name, colour))
        x += w
    out = Image.new("RGB", (width, rows * (size + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    for x, y, name, colour in items:
        draw.rectangle([x, y, x + swatch, y + swatch], fill=tuple(colour), outline=(80, 80, 80))
        draw.text((x + swatch + 4, y), name, fill=(20, 20, 20), font=f)
    return out


def with_legend(image: Image.Image, entries: Sequence[tuple[str, Colour]]) -> Image.Image:
    """`image` with a legend strip under it (the image unchanged when there are no entries)."""
    if not entries:
        return image
    strip = legend(entries, image.width, size=max(11, round(image.width / 32)))
    out = Image.new("RGB", (image.width, image.height + strip.height), (255, 255, 255))
    out.paste(image.convert("RGB"), (0, 0))
    out.paste(strip, (0, image.height))
    return out


def mask_overlay(image: Image.Image, mask: np.ndarray, colours: Sequence[Colour], alpha: float = 0.55
                 ) -> Image.Image:
    """A class-index mask (H, W) (0 = background, class c -> colours[c - 1]) blended onto `image`, resized
    to it (nearest: class indices are not blended), with the edges of each region drawn solid."""
    image = image.convert("RGB")
    mask = np.asarray(Image.fromarray(np.asarray(mask, dtype=np.uint8)).resize(image.size, Image.Resampling.NEAREST))
    lut = np.zeros((256, 3), np.uint8)
    lut[1:len(colours) + 1] = np.asarray(colours, np.uint8).reshape(-1, 3)[:255]
    base = np.asarray(image, np.float32)
    tint = lut[mask].astype(np.float32)
    fg = (mask > 0)[..., None]
    out = np.where(fg, base * (1 - alpha) + tint * alpha, base)
    edge = np.zeros_like(mask, dtype=bool)
    edge[1:] |= mask[1:] != mask[:-1]
    edge[:, 1:] |= mask[:, 1:] != mask[:, :-1]
    edge &= mask > 0
    out[edge] = tint[edge]
    return Image.fromarray(out.clip(0, 255).astype(np.uint8))


def box_at(boxes: np.ndarray, x: float, y: float) -> int | None:
    """The index of the smallest box (xyxy) that contains the point (x, y), None when none does."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    inside = (boxes[:, 0] <= x) & (x <= boxes[:, 2]) & (boxes[:, 1] <= y) & (y <= boxes[:, 3])
    if not inside.any():
        return None
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return int(np.flatnonzero(inside)[np.argmin(area[inside])])
