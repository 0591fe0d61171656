#!/usr/bin/env python
"""svformer's command line from a checkout: `python cli.py ...` is the installed `svformer ...`.

The commands live in svformer/cli.py; this file puts the checkout on sys.path (no install needed)
and hands over. Under the DeepSpeed launcher: `deepspeed cli.py train --config ...`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from svformer.cli import cli, main  # noqa: E402, F401  (tests drive `cli.cli` with click's runner)

if __name__ == "__main__":
    main(prog_name="cli.py")
