"""Turn what training wrote (a Lightning checkpoint, a DeepSpeed checkpoint folder, or a saved model
folder) into the one model folder every blendkit export has (``training/folder.py``).

The folder holds ``model.safetensors``, ``config.json``, the tokenizer (with the added marker
tokens), the component's settings and a model card, loads with ``Ranker.from_pretrained`` /
``Fuser.from_pretrained`` (or the plain transformers classes), and can be pushed to the Hub.
Checkpoints are read with ``torch.load(weights_only=True)``, which runs no pickled code. DeepSpeed
folders, which DeepSpeed itself unpickles in full, are inspected first and refused if their pickles
name anything beyond tensors and DeepSpeed's own records (``check_deepspeed_checkpoint``).
"""

from __future__ import annotations

import os
import tempfile

from transformers import AutoConfig, AutoModel, AutoTokenizer

from ..core.errors import DataError
from ..genfuser.config import SETTINGS_FILE
from ..genfuser.model import ADAPTER_CONFIG, adapter_base, is_causal, load_fuser
from ..genfuser.module import GenFuserModule
from ..pairranker import PairRankerConfig  # (importing it registers the ranker with AutoModel)
from ..pairranker.module import PairRankerModule
from ..training.card import read_json
from ..training.checkpoint import KIND_KEY, checkpoint_kind
from ..training.deepspeed_guard import check_deepspeed_checkpoint, is_deepspeed_checkpoint
from ..training.folder import save_model_folder

MODULES = {module.kind: module for module in (PairRankerModule, GenFuserModule)}


def export_checkpoint(checkpoint: str, output: str, merge_lora: bool = True, card: dict | None = None) -> str:
    """Export ``checkpoint`` (a ``.ckpt`` file, a DeepSpeed checkpoint folder, or a saved model folder) to
    ``output``. ``card``: model-card fields (``repo_id``, ``base_model``, ``datasets``, ``metrics``, ``license``)."""
    if not os.path.exists(checkpoint):
        raise FileNotFoundError(f"checkpoint {checkpoint}: not found.")
    if os.path.isdir(checkpoint) and is_deepspeed_checkpoint(checkpoint):
        try:
            from pytorch_lightning.utilities.deepspeed import convert_zero_checkpoint_to_fp32_state_dict
        except ImportError as err:  # pragma: no cover - depends on the install
            raise ImportError(f"checkpoint {checkpoint} is a DeepSpeed checkpoint; converting it needs deepspeed "
                              "(pip install 'blendkit[deepspeed]').") from err
        check_deepspeed_checkpoint(checkpoint)
        with tempfile.TemporaryDirectory() as tmp:
            single = os.path.join(tmp, "consolidated.ckpt")
            convert_zero_checkpoint_to_fp32_state_dict(checkpoint, single)  # gathers the ZeRO shards
            return export_checkpoint(single, output, merge_lora, card)
    if os.path.isdir(checkpoint):
        return _resave_model_folder(checkpoint, output, card)

    kind = checkpoint_kind(checkpoint)
    if kind not in MODULES:
        raise DataError(checkpoint, None, KIND_KEY, f"unknown model kind {kind!r}.")
    module = MODULES[kind].load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
    module.export(output, merge_lora=merge_lora, card=card)
    return output


def folder_kind(folder: str) -> str:
    """"genfuser" or "pairranker", for full exports and LoRA adapter folders alike: a fuser is a seq2seq or
    causal LM (a ranker is neither)."""
    if os.path.exists(os.path.join(folder, SETTINGS_FILE)):
        return "genfuser"
    config = read_json(folder, "config.json")
    if config.get("model_type") == PairRankerConfig.model_type:
        return "pairranker"
    if config.get("is_encoder_decoder") or (config and is_causal(AutoConfig.from_pretrained(folder))):
        return "genfuser"
    if read_json(folder, ADAPTER_CONFIG).get("task_type") in ("SEQ_2_SEQ_LM", "CAUSAL_LM"):
        return "genfuser"
    return "pairranker"


def _resave_model_folder(source: str, output: str, card: dict | None) -> str:
    """Re-save a model folder (ranker or fuser; a fuser's LoRA adapter stays an adapter) through transformers
    (and peft) into a fresh export folder."""
    kind = folder_kind(source)
    module = MODULES[kind]
    card = dict(card or {})
    if kind == "genfuser":
        adapter = os.path.exists(os.path.join(source, ADAPTER_CONFIG))
        if adapter:   # the base it names (a Hub id or alias, never a local path: training/folder.py) stays named
            card["base_model"] = card.get("base_model") or adapter_base(source)[0] or None
        model, tokenizer = load_fuser(source, base_model=card.get("base_model"), merge_lora=not adapter)
    else:
        model = AutoModel.from_pretrained(source, use_safetensors=True)
        tokenizer = AutoTokenizer.from_pretrained(source)
    settings = read_json(source, module.settings_file) if module.settings_file else None
    return save_model_folder(model, tokenizer, output, kind=kind, purpose=module.card_purpose, usage=module.card_usage,
                             merge_lora=False, settings_file=module.settings_file, settings=settings or None,
                             card=card)

