"""One process of an `accelerate launch`: `python -m smt.train.worker <spec.json>` trains the run the file
describes (smt.train.spec), as every other process of the launch does."""

from __future__ import annotations

import logging
import os
import sys

from smt.train import sft
from smt.train.spec import TrainSpec


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: python -m smt.train.worker <spec.json>")
    log = logging.getLogger(f"smt.train.rank{os.environ.get('RANK', '0')}")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    sft.train(TrainSpec.load(args[0]), log)


if __name__ == "__main__":
    main()
