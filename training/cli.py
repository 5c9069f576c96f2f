"""Lightning's CLI over blendkit's components: every training knob lives in a YAML recipe under configs/.

    blendkit train fit --config pairranker/minilm_cpu            # a packaged recipe, by name
    blendkit train fit --config my_recipe.yaml --trainer.max_epochs 3
    blendkit train fit --config pairranker/minilm_cpu --ckpt_path last     # resume
"""

from __future__ import annotations

import os
import sys

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI

from ..core.quiet import quiet_third_party
from ..core.resources import recipe_path
from .deepspeed_guard import guard_checkpoint_folders


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


def train_cli(args: list[str] | None = None, run: bool = True) -> LightningCLI:
    """Run Lightning's CLI on ``args`` (None: ``sys.argv``). ``--config`` may name a packaged recipe."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_third_party()
    argv = sys.argv
    if args is not None:
        args = [recipe_path(a) if k and args[k - 1] in ("--config", "-c") else
                "--config=" + recipe_path(a[9:]) if a.startswith("--config=") else a for k, a in enumerate(args)]
        sys.argv = sys.argv[:1]   # Lightning warns when given args while sys.argv holds others (the caller's)
    try:
        return BlendkitCLI(pl.LightningModule, pl.LightningDataModule, subclass_mode_model=True,
                           subclass_mode_data=True, save_config_kwargs={"overwrite": True}, args=args, run=run)
    finally:
        sys.argv = argv
