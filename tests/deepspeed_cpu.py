"""DeepSpeed on CPU, for the test suite only.

blendkit's DeepSpeed recipes (``configs/*/deberta_zero2.yaml``, ``t5_zero2.yaml``, ...) are meant for
CUDA GPUs, and Lightning's ``DeepSpeedStrategy`` refuses any other accelerator. DeepSpeed itself runs
on CPU (its ``cpu`` accelerator, a gloo process group), so this module lifts Lightning's check to let
CPU-only CI exercise the *real* DeepSpeed code paths: ``deepspeed.initialize``, the ZeRO optimizers
with bf16 weights and fp32 master weights, ``DeepSpeedEngine.save_checkpoint`` / ``load_checkpoint``
(a checkpoint folder, resumable), and the ZeRO-to-fp32 conversion that ``blendkit.hub.export`` runs.
The tests use stage 2; stages 1 and 3 train and export through it too. It is a test device, not a
CPU training recipe (``benchmarks/deepspeed_cpu.py`` measures what it costs here).

Nothing is compiled: the model's own ``torch.optim.AdamW`` is kept (Lightning sets
``zero_allow_untested_optimizer``), and DeepSpeed's shared-memory all-reduce op, which its torch
backend would otherwise build with g++ on first use (~1 min), is switched off (``no_shm_comm_op``);
with one process there is nothing to all-reduce over shared memory anyway.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import torch
from pytorch_lightning import Callback
from pytorch_lightning.strategies import DDPStrategy, DeepSpeedStrategy

os.environ["DS_ACCELERATOR"] = "cpu"  # before deepspeed is imported: no probing for GPUs or Intel extensions

# What Lightning's DeepSpeed set-up writes into the environment for one process.
_DIST_ENV = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "NODE_RANK")


class CPUDeepSpeedStrategy(DeepSpeedStrategy):
    """``DeepSpeedStrategy`` on ``accelerator="cpu"``; takes the same arguments (``stage=2``, ...).

    Three differences from the parent, all about devices:

    * ``setup_environment`` skips the parent's "CUDA GPUs only" check and runs DDP's (which calls
      ``setup_distributed`` below);
    * ``root_device`` is ``cpu:<local_rank>``: DeepSpeed reads the device index as its local rank;
    * ``setup_distributed`` skips the check that device indices equal local ranks (CPU devices
      have no index) and initialises DeepSpeed's process group on gloo, the CPU backend.
    """

    def setup_environment(self) -> None:
        DDPStrategy.setup_environment(self)

    @property
    def root_device(self) -> torch.device:
        return torch.device("cpu", self.local_rank)

    def setup_distributed(self) -> None:
        from lightning_fabric.utilities.seed import reset_seed

        no_shm_comm_op()
        reset_seed()
        self.set_world_ranks()
        self._process_group_backend = "gloo"
        self._init_deepspeed_distributed()


def no_shm_comm_op() -> None:
    """Mark DeepSpeed's shared-memory communication op as unavailable, so that its torch backend
    uses plain torch.distributed (gloo) instead of compiling the op with g++ on first use."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False  # the dict is cached: the edit persists


@contextmanager
def deepspeed_process_group():
    """Undo what DeepSpeed training leaves behind in this process: the gloo process group, DeepSpeed's
    communication backend and the rank variables in ``os.environ`` (later tests must not see them).

    Wrap *all* DeepSpeed training of a process in one such block: DeepSpeed caches the groups it derives
    from the process group (``deepspeed.utils.groups``), so training again after the group was destroyed
    fails. Reading the ZeRO master weights (``safe_get_full_fp32_param``) needs the group too."""
    saved = {name: os.environ.get(name) for name in _DIST_ENV}
    try:
        yield
    finally:
        import deepspeed.comm.comm as ds_comm

        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        ds_comm.cdb = None
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class LossHistory(Callback):
    """Records the training loss of every optimizer step (as a float)."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))
