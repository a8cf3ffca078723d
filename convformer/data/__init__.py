"""Data in: decoding images safely (`images`), preprocessing them with a model's own data config (`preprocess`),
the built-in Shapes dataset (`shapes`), image folders and zips (`folders`), the train/val/test splits
(`datasets`), and how far an input is from the Shapes images (`familiarity`)."""
from .images import MAX_BYTES, MAX_PIXELS, MIN_SIDE, ImageError, load_image, to_rgb
from .preprocess import MAX_ASPECT, RESIZES, Resize, fit, pick_device, preprocess, resized, transform

__all__ = ["MAX_ASPECT", "MAX_BYTES", "MAX_PIXELS", "MIN_SIDE", "RESIZES", "ImageError", "Resize", "fit",
           "load_image", "pick_device", "preprocess", "resized", "to_rgb", "transform"]
