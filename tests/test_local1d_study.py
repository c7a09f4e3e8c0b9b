"""tools/local1d_study.py's setup: the pairs it compares have equal parameters (within the few
percent a window's granularity allows), its text is the book without Project Gutenberg's licence,
and the split and the schedule are what its docstring says."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

pytest.importorskip("reasoning_gym")
import local1d_study as study  # noqa: E402
from engine.tune.scratch import cosine_lr, windows  # noqa: E402


def test_each_local1d_model_has_its_dense_partners_parameters():
    dense = {dw: study.config_of(dw, None, "logits")[1]["total"] for _, dw, w, _ in study.GRID if w is None}
    for name, dw, w, conv in study.GRID:
        cfg, counts = study.config_of(dw, w, conv)
        assert abs(counts["total"] / dense[dw] - 1) < 0.07, (name, counts["total"], dense[dw])
        if w is not None:
            assert cfg["model_type"] == "vkharp_local1d" and counts["mlp_width"] == w
            assert cfg["output_convention"] == conv


def test_the_text_is_the_book_without_the_licence():
    text = study.book_text()
    assert "IN THE YEAR 2889" in text[:200] and "Release date" not in text
    assert "Project Gutenberg License" not in text and "*** END OF" not in text
    train, val = study.split(text)
    assert 0.85 < len(train) / len(text) < 0.92 and len(val) > 1000 and text.endswith(val)


def test_windows_and_schedule():
    w = windows(np.arange(130), 64)
    assert [len(x) for x in w] == [64, 64] and w[1][0] == 64
    lrs = [cosine_lr(s, 100, 1e-2, 10) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[9] == pytest.approx(1e-2)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] >= 1e-3 - 1e-12
