"""`python -m svformer ...`: the same commands as the installed `svformer` and `python cli.py`."""

from svformer.cli import main

if __name__ == "__main__":
    main(prog_name="python -m svformer")
