"""`vkharp embed`, `index` and `search` as a user runs them (subprocesses, a tiny random checkpoint):
JSON vectors, an index interrupted with Ctrl-C that keeps its batches and a rerun that adds only the
rest, a changed file replaced, and clear one-line errors for bad files, stores and models."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from checkpoints import make_hf_checkpoint  # noqa: E402
from engine.convert import convert  # noqa: E402
from engine.embed.store import Embedder, VectorStore  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tiny")
    convert(make_hf_checkpoint(tmp, "llama"), tmp / "converted", dtype="f32", progress=False)
    return str(tmp / "converted")


def vkharp(*args, stdin="", timeout=600):
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, env=ENV, input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def test_embed_prints_unit_vectors_and_refuses_empty_text(tiny):
    r = vkharp("embed", "-m", tiny, "--pooling", "mean", "The capital of France is Paris.", "A quick brown fox.")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["text"] for x in rows] == ["The capital of France is Paris.", "A quick brown fox."]
    v = np.array([x["vector"] for x in rows])
    assert v.shape == (2, 64)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    r = vkharp("embed", "-m", tiny, "fine", " ")
    assert r.returncode == 2 and r.stderr.startswith("vkharp: error: text 1 is empty"), r.stderr


def test_index_refuses_bad_files_before_loading_a_model(tmp_path):
    binary = tmp_path / "x.bin"
    binary.write_bytes(b"\x00\x01\x02" * 100)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("café".encode("latin-1"))
    for f, msg in ((tmp_path / "missing.txt", "does not exist"), (binary, "is a binary file"),
                   (latin, "is not UTF-8 text"), (tmp_path, "is a directory")):
        r = vkharp("index", str(tmp_path / "s.db"), str(f), "-m", "/nonexistent-model")
        assert r.returncode == 2 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "s.db").exists()


def _count(path):
    try:
        with VectorStore.open(path) as st:
            return len(st)
    except Exception:
        return 0


def test_index_interrupted_keeps_its_batches_and_a_rerun_adds_only_the_rest(tiny, tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text("\n\n".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(1200)))
    store = tmp_path / "s.db"
    p = subprocess.Popen([sys.executable, "-m", "engine", "index", str(store), str(doc), "-m", tiny],
                         cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while _count(store) < 16 and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    kept = _count(store)
    assert 16 <= kept < 1200 and kept % 8 == 0, kept           # whole batches, nothing half-written
    assert f"keeps {kept} entries" in err
    r = vkharp("index", str(store), str(doc), "-m", tiny)
    assert r.returncode == 0, r.stderr
    assert f"{1200 - kept} chunks stored, {kept} already there" in r.stderr, r.stderr
    with VectorStore.open(store) as st:
        assert len(st) == 1200
        keys = [k for (k,) in st.conn.execute("SELECT key FROM items")]
        assert len(set(keys)) == 1200
    r = vkharp("index", str(store), str(doc), "-m", tiny)       # a third run: nothing to do
    assert "0 chunks stored, 1200 already there" in r.stderr, r.stderr


def test_search_finds_the_chunk_and_refuses_other_stores(tiny, tmp_path):
    doc = tmp_path / "a.txt"
    doc.write_text("The capital of France is Paris.\n\nA quick brown fox jumps over the lazy dog.\n\n"
                   "Language models predict the next token.")
    store = tmp_path / "s.db"
    assert vkharp("index", str(store), str(doc), "-m", tiny, "--pooling", "last").returncode == 0
    r = vkharp("search", str(store), "A quick brown fox jumps over the lazy dog.", "-k", "2", "-m", tiny, "--json")
    assert r.returncode == 0, r.stderr
    hits = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(hits) == 2 and hits[0]["text"] == "A quick brown fox jumps over the lazy dog."
    assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4) and hits[0]["meta"]["chunk"] == 1
    r = vkharp("search", str(store), "fox", "-m", tiny, "--pooling", "mean")
    assert r.returncode == 2 and "holds last-pooled vectors" in r.stderr
    doc.write_text("Only one sentence now.")                     # a changed file replaces its chunks
    r = vkharp("index", str(store), str(doc), "-m", tiny)
    assert "1 chunks stored, 0 already there, 3 of changed files replaced" in r.stderr, r.stderr
    other = tmp_path / "other.db"
    VectorStore.open(other, Embedder("someone-else", "feedfacefeedface", "last", 64), create=True).close()
    r = vkharp("search", str(other), "fox", "-m", tiny)
    assert r.returncode == 2 and "is empty" in r.stderr
    with VectorStore.open(other) as st:
        st.add(["x"], np.ones((1, 64)) / 8)
    r = vkharp("search", str(other), "fox", "-m", tiny)
    assert r.returncode == 2 and "holds vectors of model someone-else" in r.stderr, r.stderr
    r = vkharp("search", str(tmp_path / "none.db"), "fox", "-m", tiny)
    assert r.returncode == 2 and "does not exist: build it first" in r.stderr
