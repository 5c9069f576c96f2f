"""The training base every component fills in: one LightningModule, one MixInstruct DataModule, and what
they share (optimizer, LoRA, checkpoint format, DeepSpeed checkpoint guard, the exported model folder).

Components subclass :class:`BlendkitModule` and :class:`MixInstructDataModule`; the command line is
``blendkit train`` (``training/cli.py``).
"""
