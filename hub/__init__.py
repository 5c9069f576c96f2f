"""From training output to the Hugging Face Hub: export a checkpoint as a model folder, push it."""

from .export import export_checkpoint, folder_kind
from .push import push_to_hub

__all__ = ["export_checkpoint", "folder_kind", "push_to_hub"]
