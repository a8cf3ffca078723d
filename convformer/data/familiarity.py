"""Does an image look like the built-in Shapes data? A simple, honest test, so that a model trained on Shapes
can say "this is not what I was trained on" next to its prediction instead of only a confident shape.

The model's own confidence cannot tell: the bundled checkpoints call the cat photo "ring" at 92%. The test is
on the pixels instead. A Shapes image is a smooth background (gradient, faint stripes and blotches) with one
flat-coloured object and a few thin strokes, so few neighbouring pixels differ much; a photo has texture
almost everywhere. `texture(image)` is the share of pixels, on the image box-resized to 64 x 64, whose
brightness (the mean of R, G, B) steps by more than 10% of the range to the right and down together.
Measured: 2,400 Shapes renders (train and test splits, 32 to 224 px, square and not) stay at or under 0.15;
the photos at hand score 0.25 to 0.61 (the example cat 0.32, astronaut 0.47, matplotlib's Grace Hopper 0.34).
`unlike_shapes` flags above 0.20 (it returns the texture; the app words it). It can miss a photo that is mostly smooth (a blurred background, a flat
drawing): then it says nothing rather than something wrong.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

SIDE = 64            # the test looks at the image at 64 x 64, the bundled checkpoints' input size
STEP = 0.10          # a brightness step between neighbours that counts as an edge (of the 0-1 range)
TEXTURE_LIMIT = 0.20  # Shapes renders: at most 0.15; photos measured: 0.25 and more


def texture(image: Image.Image) -> float:
    """Share of pixels (at 64 x 64) whose brightness steps to the right plus down add up to > 10%."""
    rgb = np.asarray(image.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BOX), dtype=np.float32)
    grey = rgb.mean(-1) / 255  # brightness: the mean of R, G and B
    down, right = np.abs(np.diff(grey, axis=0))[:, :-1], np.abs(np.diff(grey, axis=1))[:-1]
    return float(((down + right) > STEP).mean())


def unlike_shapes(image: Image.Image) -> float | None:
    """The image's texture when it is unlike the Shapes data (above TEXTURE_LIMIT, see the module docstring),
    else None. The words are the caller's (the app says them in the page's language)."""
    t = texture(image)
    return t if t > TEXTURE_LIMIT else None


__all__ = ["TEXTURE_LIMIT", "texture", "unlike_shapes"]
