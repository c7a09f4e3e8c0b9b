"""An on-disk vector store: text, metadata (JSON) and vector of each entry in one SQLite file.

    store = VectorStore.open(path, embedder=Embedder.of(model, "prompteol"), create=True)
    ids = store.add(texts, vectors, metas=[{"file": "a.txt"}], keys=["a.txt:0"])
    hits = store.search(query_vector, k=5)         # [Hit(id, score, text, meta)], best first
    store.delete(ids)

Why SQLite + sqlite-vec (through apsw): one file holds the text, the metadata and the vector, so they
cannot drift apart (usearch and faiss keep only vectors: the text would need a second store and a
second commit); every add/delete is one transaction, so an interrupted `vkharp index` keeps exactly
what it committed; WAL mode gives concurrent readers a consistent snapshot while a writer works
(SQLite's own locking, not ours); sqlite-vec's `vec0` table does the exact top-k cosine search in C
(brute force, fine to ~10^5 vectors, what a chat memory or a document folder needs). This Python's
`sqlite3` cannot load extensions, so the connection is apsw's.

The store records who made its vectors (model name, a fingerprint of its weights, pooling, width):
vectors from another model or pooling live in another space, so such a query is refused.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import VkharpError

SCHEMA = 1
BUSY_MS = 10_000   # a writer waits this long for another writer (readers never wait in WAL mode)


class StoreMismatch(VkharpError):
    """A query or vectors from another model/pooling than the store's."""


@dataclass(frozen=True)
class Embedder:
    """What made a store's vectors."""
    model: str          # a readable name
    fingerprint: str    # of the weights (manifest checksums): a renamed copy is the same model
    pooling: str
    dim: int

    @classmethod
    def of(cls, model, pooling: str) -> "Embedder":
        from engine.model import weights_fingerprint
        return cls(model=model.path.name, fingerprint=weights_fingerprint(model.path), pooling=pooling,
                   dim=int(model.cfg.hidden_size))


@dataclass(frozen=True)
class Hit:
    id: int
    score: float        # cosine similarity
    text: str
    meta: dict


def _connect(path: Path):
    import apsw
    import sqlite_vec
    try:
        conn = apsw.Connection(str(path))
        conn.set_busy_timeout(BUSY_MS)
        conn.enable_load_extension(True)
        conn.load_extension(sqlite_vec.loadable_path())
        conn.enable_load_extension(False)
        conn.execute("PRAGMA journal_mode=WAL")
    except apsw.NotADBError:
        raise VkharpError(f"{path} is not a vector store (not an SQLite file); give another path") from None
    except apsw.Error as exc:
        raise VkharpError(f"cannot open the vector store {path}: {exc}") from None
    return conn


class VectorStore:
    def __init__(self, path: Path, conn, embedder: Embedder):
        self.path, self.conn, self.embedder = path, conn, embedder

    @classmethod
    def open(cls, path, embedder: Embedder | None = None, *, create: bool = False) -> "VectorStore":
        """Open a store; with create=True a missing one is made for `embedder`. With an embedder, the
        store must have been made by the same one (StoreMismatch otherwise)."""
        path = Path(path)
        if not path.exists():
            if not create:
                raise VkharpError(f"{path} does not exist: build it first with `vkharp index {path} FILES...`")
            if embedder is None:
                raise VkharpError("a new store needs to know the model and pooling that make its vectors")
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = _connect(path)
            with conn:
                conn.execute("CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                conn.execute("CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY, text TEXT NOT NULL, "
                             "meta TEXT NOT NULL, key TEXT UNIQUE)")
                conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS vecs USING vec0(embedding float[{embedder.dim}] "
                             f"distance_metric=cosine)")
                for k, v in (("schema", SCHEMA), ("model", embedder.model), ("fingerprint", embedder.fingerprint),
                             ("pooling", embedder.pooling), ("dim", embedder.dim)):
                    conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)", (k, str(v)))
        else:
            if path.is_dir():
                raise VkharpError(f"{path} is a directory, not a vector store file")
            conn = _connect(path)
        store = cls(path, conn, cls._read_embedder(path, conn))
        if embedder is not None:
            store.check(embedder)
        return store

    @staticmethod
    def _read_embedder(path, conn) -> Embedder:
        import apsw
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except apsw.SQLError:
            meta = {}
        except apsw.NotADBError:
            raise VkharpError(f"{path} is not a vector store (not an SQLite file); give another path") from None
        if not {"model", "fingerprint", "pooling", "dim"} <= set(meta):
            raise VkharpError(f"{path} is an SQLite file but not a vkharp vector store; give another path")
        if int(meta.get("schema", 0)) != SCHEMA:
            raise VkharpError(f"{path} has store schema {meta.get('schema')}, this vkharp reads {SCHEMA}; "
                              f"rebuild it with `vkharp index`")
        return Embedder(meta["model"], meta["fingerprint"], meta["pooling"], int(meta["dim"]))

    def check(self, embedder: Embedder) -> None:
        """Refuse vectors from another model or pooling than the store's (another vector space)."""
        mine = self.embedder
        if embedder.fingerprint != mine.fingerprint or embedder.dim != mine.dim:
            raise StoreMismatch(f"{self.path} holds vectors of model {mine.model} (weights {mine.fingerprint}); "
                                f"this is {embedder.model} (weights {embedder.fingerprint}): search it with that "
                                f"model (--model), or index into another store")
        if embedder.pooling != mine.pooling:
            raise StoreMismatch(f"{self.path} holds {mine.pooling}-pooled vectors, this query is {embedder.pooling}-"
                                f"pooled: use --pooling {mine.pooling}, or index into another store")

    def __len__(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM items").fetchall()[0][0])

    def _vector_bytes(self, v) -> bytes:
        v = np.asarray(v, np.float32).reshape(-1)
        if v.size != self.embedder.dim:
            raise VkharpError(f"{self.path} holds {self.embedder.dim}-wide vectors, got one of {v.size}")
        if not np.all(np.isfinite(v)):
            raise VkharpError("a vector holds NaN or infinity; it is not stored")
        return v.tobytes()

    def add(self, texts, vectors, metas=None, keys=None) -> list[int]:
        """Store entries in one transaction (all or none); returns their ids. `keys` (optional, unique):
        what `vkharp index` uses to know what it already stored."""
        texts = list(texts)
        vectors = np.asarray(vectors, np.float32).reshape(len(texts), -1) if texts else np.zeros((0, 0))
        metas = list(metas) if metas is not None else [{}] * len(texts)
        keys = list(keys) if keys is not None else [None] * len(texts)
        if not len(metas) == len(keys) == len(texts):
            raise VkharpError(f"add: {len(texts)} texts, {len(metas)} metadata, {len(keys)} keys: they must pair up")
        blobs = [self._vector_bytes(v) for v in vectors]   # checked before the transaction starts
        ids = []
        import apsw
        try:
            with self.conn:
                for text, blob, meta, key in zip(texts, blobs, metas, keys):
                    self.conn.execute("INSERT INTO items(text, meta, key) VALUES (?, ?, ?)",
                                      (text, json.dumps(meta, ensure_ascii=False), key))
                    rid = self.conn.last_insert_rowid()
                    self.conn.execute("INSERT INTO vecs(rowid, embedding) VALUES (?, ?)", (rid, blob))
                    ids.append(rid)
        except apsw.ConstraintError:
            raise VkharpError(f"{self.path}: one of the keys is already stored; nothing of this batch was added") from None
        return ids

    def delete(self, ids) -> int:
        """Remove entries by id (one transaction); returns how many existed."""
        n = 0
        with self.conn:
            for i in ids:
                self.conn.execute("DELETE FROM items WHERE id = ?", (int(i),))
                n += self.conn.changes()
                self.conn.execute("DELETE FROM vecs WHERE rowid = ?", (int(i),))
        return n

    def delete_file_except(self, file: str, sha: str) -> int:
        """Remove the entries of `file` (meta "file") made from other content than `sha` (a changed file)."""
        ids = [r[0] for r in self.conn.execute(
            "SELECT id FROM items WHERE json_extract(meta, '$.file') = ? AND json_extract(meta, '$.sha') != ?",
            (file, sha))]
        return self.delete(ids) if ids else 0

    def stored_keys(self, keys) -> set:
        """Which of these keys are already stored."""
        keys = list(keys)
        found = set()
        for s in range(0, len(keys), 500):
            part = keys[s:s + 500]
            rows = self.conn.execute(f"SELECT key FROM items WHERE key IN ({','.join('?' * len(part))})", part)
            found.update(r[0] for r in rows)
        return found

    def get(self, ids) -> list[Hit]:
        out = []
        for i in ids:
            for rid, text, meta in self.conn.execute("SELECT id, text, meta FROM items WHERE id = ?", (int(i),)):
                out.append(Hit(rid, 1.0, text, json.loads(meta)))
        return out

    def search(self, vector, k: int = 5) -> list[Hit]:
        """The k entries most similar (cosine) to `vector`, best first."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise VkharpError(f"k must be an integer ≥ 1, got {k!r}")
        if len(self) == 0:
            raise VkharpError(f"{self.path} is empty: add texts with `vkharp index {self.path} FILES...`")
        rows = self.conn.execute(
            "WITH knn AS (SELECT rowid, distance FROM vecs WHERE embedding MATCH ? AND k = ?) "
            "SELECT items.id, knn.distance, items.text, items.meta FROM knn JOIN items ON items.id = knn.rowid "
            "ORDER BY knn.distance", (self._vector_bytes(vector), int(k))).fetchall()
        return [Hit(int(i), 1.0 - float(d), text, json.loads(meta)) for i, d, text, meta in rows]

    def close(self) -> None:
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
