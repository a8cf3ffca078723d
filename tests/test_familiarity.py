"""The 'unlike the Shapes data' test: fresh Shapes renders at several sizes are never flagged, photos are."""
from pathlib import Path

import matplotlib
import pytest
from PIL import Image

from convformer.data import shapes
from convformer.data.familiarity import TEXTURE_LIMIT, texture, unlike_shapes

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = [ROOT / "assets" / "examples" / "photo_chelsea_cat.jpg", ROOT / "assets" / "examples" / "photo_astronaut.jpg",
          Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"]


@pytest.mark.parametrize("size", [32, 64, (64, 96), 224])
def test_shapes_images_are_not_flagged(size):
    # the test split at a seed the limit was not measured on
    values = [texture(shapes.render(i, "test", size, seed=7)[0]) for i in range(40)]
    assert max(values) < TEXTURE_LIMIT
    assert all(unlike_shapes(shapes.render(i, "test", size, seed=7)[0]) is None for i in range(5))


@pytest.mark.parametrize("path", PHOTOS, ids=lambda p: p.stem)
def test_photos_are_flagged_with_their_texture(path):
    image = Image.open(path)
    assert unlike_shapes(image) == texture(image) > TEXTURE_LIMIT


def test_flat_and_noisy_extremes():
    assert texture(Image.new("RGB", (300, 200), (40, 90, 200))) == 0.0
    import numpy as np
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (128, 128, 3), dtype=np.uint8))
    assert texture(noise) > 0.7
