"""Loading other people's files safely, and failing cleanly when the disk does."""

from __future__ import annotations

import errno
import os
import pickle
import re
import socket

import pytest
from helpers import ROOT

from blendkit import commands


class _Payload:
    """Unpickling this runs code: it would create the marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_payload_in_a_model_folder_is_refused(ranker_dir, tmp_path):
    """A folder whose weights are a pickle (pytorch_model.bin) with a code payload: nothing runs."""
    import shutil

    from blendkit.pairranker import Ranker

    evil = tmp_path / "evil_model"
    shutil.copytree(ranker_dir, evil)
    os.remove(evil / "model.safetensors")
    marker = tmp_path / "pwned"
    with open(evil / "pytorch_model.bin", "wb") as f:
        pickle.dump({"weight": _Payload(str(marker))}, f)
    with pytest.raises(OSError, match="cannot load the ranker.*safetensors only"):
        Ranker.from_pretrained(str(evil))
    assert not marker.exists(), "the pickle payload ran"


def test_a_pickle_payload_in_a_checkpoint_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "evil.ckpt"
    with open(ckpt, "wb") as f:
        pickle.dump({"state_dict": _Payload(str(marker)), "blendkit_kind": "pairranker"}, f)
    code = commands.main(["export", "--checkpoint", str(ckpt), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "weights_only=True" in err and "evil.ckpt" in err
    assert not marker.exists() and not (tmp_path / "out").exists()


def _evil_deepspeed_folder(tmp_path, marker):
    """A DeepSpeed-shaped checkpoint folder (``last.ckpt/checkpoint/*.pt``) whose optimizer file is a payload."""
    import torch

    folder = tmp_path / "last.ckpt"
    (folder / "checkpoint").mkdir(parents=True)
    torch.save({"module": {"w": torch.zeros(2)}}, folder / "checkpoint" / "mp_rank_00_model_states.pt")
    torch.save({"optimizer_state_dict": _Payload(str(marker))},  # torch.save pickles the payload's call
               folder / "checkpoint" / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt")
    (folder / "latest").write_text("checkpoint")   # as Lightning writes it: DeepSpeed reads this tag's folder
    return folder


def test_a_pickle_payload_in_a_deepspeed_checkpoint_is_refused(tmp_path, capsys):
    """DeepSpeed's converter unpickles without weights_only; blendkit inspects the files first."""
    marker = tmp_path / "pwned"
    folder = _evil_deepspeed_folder(tmp_path, marker)
    code = commands.main(["export", "--checkpoint", str(folder), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "optim_states.pt" in err and "refused: reading it would call io.open" in err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_deepspeed_tag_outside_the_folder_or_a_payload_in_another_tag_is_refused(tmp_path):
    """DeepSpeed reads the folder named by ``latest``: it must lie inside, and every tag's files are checked."""
    import torch

    from blendkit.training.deepspeed_guard import check_deepspeed_checkpoint

    marker = tmp_path / "pwned"
    folder = _evil_deepspeed_folder(tmp_path, marker)
    (folder / "checkpoint" / "bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt").unlink()
    check_deepspeed_checkpoint(str(folder))                      # tensors only: accepted
    os.symlink(tmp_path, folder / "link")
    with pytest.raises(ValueError, match="link: refused: a symbolic link"):
        check_deepspeed_checkpoint(str(folder))
    (folder / "link").unlink()
    (folder / "latest").write_text("../elsewhere")
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(ValueError, match="latest.*'../elsewhere', which is not a folder inside"):
        check_deepspeed_checkpoint(str(folder))
    (folder / "latest").write_text("checkpoint")
    (folder / "other").mkdir()
    torch.save({"x": _Payload(str(marker))}, folder / "other" / "mp_rank_00_model_states.pt")
    with pytest.raises(ValueError, match="other/mp_rank_00_model_states.pt.*refused"):
        check_deepspeed_checkpoint(str(folder))
    assert not marker.exists()


def test_resuming_from_an_evil_deepspeed_checkpoint_is_refused(tmp_path, capsys):
    marker = tmp_path / "pwned"
    folder = _evil_deepspeed_folder(tmp_path, marker)
    code = commands.main(["train", "fit", "--config", str(ROOT / "configs" / "pairranker" / "minilm_cpu.yaml"),
                          "--trainer.default_root_dir", str(tmp_path / "run"), "--ckpt_path", str(folder),
                          "--trainer.logger", "false", "--trainer.enable_progress_bar", "false"])
    err = capsys.readouterr().err
    assert code == 2 and "refused" in err and "optim_states.pt" in err
    assert not marker.exists()


def test_the_guarded_strategy_still_pickles_and_checks(tmp_path):
    """ddp_spawn pickles the trainer and its strategy: the guard must survive that and keep checking."""
    import torch
    from pytorch_lightning.strategies import SingleDeviceStrategy

    from blendkit.training.deepspeed_guard import guard_checkpoint_folders

    strategy = SingleDeviceStrategy(torch.device("cpu"))
    guard_checkpoint_folders(strategy)
    copy = pickle.loads(pickle.dumps(strategy))
    marker = tmp_path / "pwned"
    with pytest.raises(ValueError, match="refused"):
        copy.load_checkpoint(str(_evil_deepspeed_folder(tmp_path, marker)))
    assert not marker.exists()
    torch.save({"state_dict": {}}, tmp_path / "plain.ckpt")
    assert copy.load_checkpoint(str(tmp_path / "plain.ckpt")) == {"state_dict": {}}


def test_no_code_enables_trust_remote_code_or_unsafe_torch_load():
    offenders = []
    for folder, _, files in os.walk(ROOT):
        if any(part in folder for part in (".venv", "tests", ".git", "runs")):
            continue
        for name in files:
            if name.endswith(".py"):
                text = open(os.path.join(folder, name), encoding="utf-8").read()
                if re.search(r"trust_remote_code\s*=\s*True", text):
                    offenders.append(f"{name}: trust_remote_code=True")
                for call in re.findall(r"torch\.load\([^)]*\)", text):
                    if "weights_only=True" not in call:
                        offenders.append(f"{name}: {call}")
    assert not offenders


def test_local_models_load_without_touching_the_network(ranker_dir, monkeypatch, tmp_path):
    """With the Hub switch *on* (HF_HUB_OFFLINE unset), a local folder still loads with no connection."""
    from blendkit.pairranker import Ranker

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    ranker = Ranker.from_pretrained(ranker_dir)
    assert ranker.rank("q", ["a", "b"])[0].ranks in ([1, 2], [2, 1])


def test_a_full_disk_leaves_the_previous_output_intact(ranker_dir, rows_file, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ranked.jsonl"
    out.write_text("previous results\n")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("blendkit.core.atomic.os.fsync", full)
    code = commands.main(["rank", "--data", rows_file, "--model", ranker_dir, "--output", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and "Traceback" not in err
    assert out.read_text() == "previous results\n"
    assert [p for p in os.listdir(tmp_path) if p.endswith(".tmp")] == []    # no temporary file left behind


@pytest.mark.parametrize("command", ["rank", "generate"])
def test_an_unreachable_hub_id_gives_a_clear_error(command, rows_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = ["--model", "someone/no-such-model"] if command == "rank" else ["--models", "someone/no-such-model"]
    code = commands.main([command, "--data", rows_file, *model, "--output", str(tmp_path / "o.jsonl"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "'someone/no-such-model'" in err and "local folder" in err and "Traceback" not in err
