"""Train blendkit models with Lightning's CLI; every knob lives in a YAML recipe under configs/.

    python train.py fit --config configs/pairranker/minilm_cpu.yaml
    python train.py fit --config configs/genfuser/minilm_cpu.yaml
    python train.py fit --config configs/pairranker/minilm_cpu.yaml --trainer.max_epochs 3
    python train.py fit --config configs/pairranker/minilm_cpu.yaml --ckpt_path last     # resume
    python train.py fit --print_config --config configs/pairranker/lora.yaml           # show all knobs

Add --debug for full tracebacks on errors.
"""

from __future__ import annotations

import os
import sys

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI

from blendkit.export import guard_checkpoint_folders


class BlendkitCLI(LightningCLI):
    def before_fit(self) -> None:
        # Checkpoints go to <default_root_dir>/checkpoints, one fixed place, so that
        # `--ckpt_path last` finds the previous run's (Lightning's default is a new
        # lightning_logs/version_N folder per run, where "last" finds nothing).
        for callback in self.trainer.checkpoint_callbacks:
            if callback.dirpath is None:
                callback.dirpath = os.path.join(self.trainer.default_root_dir, "checkpoints")

    def instantiate_trainer(self, **kwargs) -> pl.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        guard_checkpoint_folders(trainer.strategy)   # DeepSpeed unpickles resumed folders in full: inspect first
        return trainer


def cli(args: list[str] | None = None, run: bool = True) -> LightningCLI:
    """Run the CLI on ``args`` (None: the command line)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import blendkit.genfuser.datamodule  # noqa: F401  (so class_path entries resolve)
    import blendkit.genfuser.module  # noqa: F401
    import blendkit.pairranker.datamodule  # noqa: F401
    import blendkit.pairranker.module  # noqa: F401

    return BlendkitCLI(pl.LightningModule, pl.LightningDataModule, subclass_mode_model=True,
                       subclass_mode_data=True, save_config_kwargs={"overwrite": True}, args=args, run=run)


def main(argv: list[str]) -> None:
    sys.argv = [sys.argv[0], *argv]  # LightningCLI reads sys.argv itself (without our --debug)
    cli(None)


if __name__ == "__main__":
    from blendkit.cli_errors import run_cli

    sys.exit(run_cli(main))
