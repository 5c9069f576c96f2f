"""GenFuser: a causal LM (or a seq2seq model) that fuses the top-K ranked candidates into one answer.

    from blendkit.genfuser import Fuser
    fuser = Fuser.from_pretrained("path/to/fuser")
    fuser.fuse(["instruction"], [["best answer", "second", "third"]])
"""

from .inference import Fuser, FuseResult
from .model import build_fuser, load_fuser

__all__ = ["Fuser", "FuseResult", "build_fuser", "load_fuser"]
