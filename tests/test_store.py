"""engine/embed/store.py: text, metadata and vector in one SQLite file; add, delete, top-k cosine
search against a numpy brute force, the embedder check, bad files, and a reader that is not blocked
by (and does not see) a writer's open transaction."""
import subprocess
import sys

import numpy as np
import pytest

from engine.embed.store import Embedder, StoreMismatch, VectorStore
from engine.errors import VkharpError

EMB = Embedder("tiny-model", "0123456789abcdef", "mean", 7)


def unit(rng, n, d=7):
    v = rng.standard_normal((n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_add_search_delete_against_brute_force(tmp_path, rng):
    path = tmp_path / "s.db"
    vecs = unit(rng, 40)
    with VectorStore.open(path, EMB, create=True) as st:
        ids = st.add([f"text {i}" for i in range(40)], vecs, metas=[{"i": i, "ü": "ß"} for i in range(40)])
        assert len(st) == 40
    with VectorStore.open(path, EMB) as st:   # reopened: everything is on disk
        q = unit(rng, 1)[0]
        hits = st.search(q, k=5)
        want = np.argsort(-(vecs @ q))[:5]
        assert [h.id for h in hits] == [ids[i] for i in want]
        assert [h.text for h in hits] == [f"text {i}" for i in want]
        assert hits[0].meta == {"i": int(want[0]), "ü": "ß"}
        np.testing.assert_allclose([h.score for h in hits], (vecs @ q)[want], atol=1e-5)
        assert st.delete([ids[want[0]], 99999]) == 1
        assert len(st) == 39
        assert st.search(q, k=1)[0].id == ids[want[1]]
        assert len(st.search(q, k=100)) == 39


def test_keys_tell_what_is_stored_and_a_batch_is_all_or_nothing(tmp_path, rng):
    with VectorStore.open(tmp_path / "s.db", EMB, create=True) as st:
        st.add(["a", "b"], unit(rng, 2), keys=["f:0", "f:1"])
        assert st.stored_keys(["f:0", "f:1", "f:2"]) == {"f:0", "f:1"}
        with pytest.raises(VkharpError, match="already stored; nothing of this batch"):
            st.add(["c", "b again"], unit(rng, 2), keys=["f:2", "f:1"])
        assert len(st) == 2 and st.stored_keys(["f:2"]) == set()
        with pytest.raises(VkharpError, match="7-wide vectors, got one of 3"):
            st.add(["x"], np.ones((1, 3)))
        with pytest.raises(VkharpError, match="NaN"):
            st.add(["x"], np.full((1, 7), np.nan))


def test_another_model_or_pooling_is_refused(tmp_path, rng):
    path = tmp_path / "s.db"
    VectorStore.open(path, EMB, create=True).close()
    with pytest.raises(StoreMismatch, match="holds vectors of model tiny-model .* search it with that model"):
        VectorStore.open(path, Embedder("other", "ffff", "mean", 7))
    with pytest.raises(StoreMismatch, match="holds mean-pooled vectors, this query is last-pooled: use --pooling mean"):
        VectorStore.open(path, Embedder("tiny-model", EMB.fingerprint, "last", 7))
    with VectorStore.open(path) as st:
        assert st.embedder == EMB
        with pytest.raises(VkharpError, match="is empty"):
            st.search(unit(rng, 1)[0])


def test_bad_paths_get_clear_messages(tmp_path):
    with pytest.raises(VkharpError, match="does not exist: build it first"):
        VectorStore.open(tmp_path / "missing.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(VkharpError, match="not a vector store"):
        VectorStore.open(junk)
    with pytest.raises(VkharpError, match="is a directory"):
        VectorStore.open(tmp_path)


READER = """
import sys, numpy as np
from engine.embed.store import VectorStore
st = VectorStore.open(sys.argv[1])
q = np.ones(7, np.float32) / 7 ** 0.5
print(len(st), len(st.search(q, k=50)))
"""


def test_a_reader_is_not_blocked_by_an_open_write(tmp_path, rng):
    path = tmp_path / "s.db"
    st = VectorStore.open(path, EMB, create=True)
    st.add(["a", "b", "c"], unit(rng, 3))
    st.conn.execute("BEGIN IMMEDIATE")           # a writer mid-transaction (as in a long index batch)
    st.conn.execute("INSERT INTO items(text, meta) VALUES ('d', '{}')")
    out = subprocess.run([sys.executable, "-c", READER, str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "3"]       # the committed snapshot, at once (no busy wait)
    st.conn.execute("ROLLBACK")
    st.add(["d"], unit(rng, 1))
    out = subprocess.run([sys.executable, "-c", READER, str(path)], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["4", "4"]
    st.close()
