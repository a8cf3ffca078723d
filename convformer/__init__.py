"""ConvFormer Lab: hybrid conv + transformer image classifiers at early, mid and late fusion."""
from .export.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import FUSIONS, ConvFormerConfig
from .data import ImageError, load_image, pick_device, preprocess
from .inspection import Inspection, inspect
from .model import LAYOUTS, ConvFormer, build_model
from .presets import PRESETS, create

__all__ = ["FUSIONS", "LAYOUTS", "PRESETS", "CheckpointError", "ConvFormer", "ConvFormerConfig", "ImageError",
           "Inspection", "build_model", "create", "inspect", "load_checkpoint", "load_image", "pick_device",
           "preprocess", "save_checkpoint"]
