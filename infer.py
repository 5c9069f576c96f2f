"""Batch inference with trained blendkit models: ``python infer.py rank|fuse|generate|blend|export ...``.

The same commands as the ``blendkit`` console script (``blendkit --help`` lists them); this file only
hands its arguments to :func:`blendkit.commands.main`.

    python infer.py rank   --data FILE --model DIR --output OUT.jsonl [--pool pool12.txt] [--plot OUT.png]
    python infer.py fuse   --data FILE --model FUSER_DIR [--ranker DIR] --output OUT.jsonl [--top-k 3]
    python infer.py generate --models smollm2 gemma3-270m --data FILE --output OUT.jsonl [--weighting exact]
    python infer.py blend  --data FILE --ranker DIR [--fuser DIR] [--generate-with MODELS...] --output OUT.jsonl
    python infer.py export --checkpoint CKPT_OR_DIR --output DIR
"""

import sys

from blendkit.commands import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="infer.py"))
