"""Train blendkit models with Lightning's CLI; every knob lives in a YAML recipe under configs/.

The same command as ``blendkit train``; this file only hands its arguments to
:func:`blendkit.commands.main`.

    python train.py fit --config configs/pairranker/minilm_cpu.yaml
    python train.py fit --config pairranker/minilm_cpu --trainer.max_epochs 3    # packaged recipe by name
    python train.py fit --config configs/pairranker/minilm_cpu.yaml --ckpt_path last     # resume
    python train.py fit --print_config --config configs/pairranker/lora.yaml           # show all knobs
"""

import sys

from blendkit.commands import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]], prog="train.py"))
