#!/usr/bin/env python3
"""Accuracy of generation settings on generative tasks (GSM8K-style, BIG-bench): engine/evaluate.py.

    python tools/evaluate.py --list
    python tools/evaluate.py -n 20 --settings greedy greedy-harp-cached topT0.1-T1.0 -o runs/eval.jsonl
    python tools/evaluate.py ... --resume        # continue an interrupted run
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.cli import main as vkharp  # noqa: E402


def main(argv=None) -> int:
    """`vkharp eval ARGS`: the one CLI's parser, errors and exit codes."""
    return vkharp(["eval", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
