"""Models out: checkpoints (`checkpoint`: safetensors + a JSON header, the bundled ones) and a model as
standalone PyTorch source (`code`: `export`, `load`, the `code` command; `writer` writes the source)."""
from .code import ExportError, add_parser, check, code_command, command_for, export, load

__all__ = ["ExportError", "add_parser", "check", "code_command", "command_for", "export", "load"]
