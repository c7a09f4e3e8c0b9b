"""Twin of shaders/loss.comp: the sources' training losses and their gradients w.r.t. the logits.

THE RULE TABLE (written once here; shaders/loss.comp follows it and points here).

Inputs, per row t < T (row t is the model's prediction for answer token t):
  z_t = logits f32[V], y_t = targets[t], w_t = weights[t] >= 0 (0 masks the row),
  p_t = softmax(z_t), m_t = max z_t, S_t = sum_v exp(z_tv - m_t), lse_t = m_t + log S_t,
  a_t = the row's prediction: argmax_v z_tv (lowest index wins ties); for target-only
        argmin_v |z_tv| (the seed's find_nearest_zero), also lowest index on ties.
  k_tv = z_tv, for target-only -|z_tv|: the key a_t maximises.
  r_t = argmax_{v != y_t} k_tv, the strongest wrong token (lowest index on ties; r_t = a_t whenever
        a_t != y_t; none when V = 1).
  hold >= 0 (logit units, default 0): how clearly the target must lead to count as predicted, so
        that greedy decoding on a slightly different path (another fusion, other rounding) still
        picks it. gap_t = k_ty - k_tr, in f32 (as the shader: the comparison is exact there and
        here); +inf when there is no r_t.
  A row counts when w_t > 0; it mismatches when it counts and (a_t != y_t or gap_t < hold).
        (target-only: |z_y| + hold > min_{v != y} |z_v|.) hold = 0 is plain a_t != y_t, since
        a_t = y_t means gap_t >= 0.
  t* = the first mismatching row (T when none).  W = sum_t w_t,  N = #{t: w_t > 0}.
  CE_t = lse_t - z_t[y_t] = -log p_t[y_t].

Rule (id)          loss L                                            dL/dz_tv = c_t * g_tv
ce (0)             sum_t w_t CE_t / W                               c = w_t/W,   g = p - e_y
first-mismatch (1) w_t* (CE_t* + log S_t* - log S'_t*)   at t* only  c = w_t* [t = t*],
                   S' = sum_{v != r} exp(z_v - m): the second term       g = 2p - e_y - s
                   is -log(1 - p[r]) = "lower the strongest wrong        s_v = exp(z_v - m)/S' (v != r),
                   token" (the prediction a when a != y; the runner-up   s_r = 0
                   when y leads by less than hold), the first "raise
                   the expected one". No mismatch: L = 0 and the gradient is exactly 0.
mismatch-only (2)  sum_{t mismatching} w_t CE_t / W                  c = w_t/W [t mismatches], g = p - e_y
span (3)           sum_t w_t CE_t / N                                c = w_t/N,   g = p - e_y
                   (normalised by the number of rows, not their weights, so a span weighted k > 1
                   (span_weights) pulls k times harder without quieting the other rows)
position-edit (4)  sum_t w_t CE(q_t, p_t) / W,  CE(q, p) = -sum_v q_v log p_v      c = w_t/W, g = p - q
target-only (5)    sum_t w_t z_t[y_t]^2 / N  (the seed's true_loss: tf.reduce_mean over its rows;
                   N, the rows counted: masked rows (a program's padding) do not dilute it)
                                                                     c = w_t/N,   g = 2 z_ty e_y
(W or N = 0: L = 0 and the gradient is 0.)
hold changes which rows mismatch, so first-mismatch's t* and r and mismatch-only's rows; for ce,
span, position-edit and target-only it changes only the stats (n_mismatch, first).

position-edit's soft target q_t, from the untuned model's logits b_t (the `base` buffer) and
edits[t] (the wrong token at an edited row; EDIT_NONE = 0xFFFFFFFF for an unedited one;
EDIT_ARGMAX = 0xFFFFFFFE: the wrong token is argmax b_t, what the model said greedily):
  pi = softmax(b_t).  Unedited row: q = pi (at the start z = b, so g = 0 there exactly; later it
  pulls back against drift).  Edited row, wanted y = y_t, wrong u:
    pi'_y = pi_y + pi_u, pi'_u = 0        (the wrong token's mass moves to the wanted one; u = y:
                                            nothing moves)
    M  = max_{v not in {y, u}} pi_v       (the strongest other token; 0 when there is none)
    Y  = max(pi'_y, M + margin)           (the wanted token becomes the clear argmax)
    Z  = 1 - pi_y - [u != y] pi_u + Y     (the sum of pi' with pi'_y = Y)
    q_v = pi_v / Z (v not in {y, u}),  q_u = 0,  q_y = Y / Z.
  CE(q, p) = log S - sum_v q_v (z_v - m).
  The seed's example: the model said 12345 where 12045 was wanted; the rows are those predicting
  "1", "2" and the edited "0" (wrong token "3"): the prefix with the target changed, no EOS row
  (position_edit_targets builds targets and edits from what was said and the changes).

Stats (u32 words, floats as bits; STAT_FIELDS):
  0 loss f32 · 1 n_mismatch (with hold) · 2 first (t*, T when none) · 3 norm f32 (W, N, or 1 for
  first-mismatch: the denominator used) · 4 rows counted (N) · 5 nonfinite (rows whose logits hold
  NaN or +inf) · 6, 7 reserved (0) · then, when the buffer has room, pred[t] = a_t for t < T (the
  argmax itself, whatever hold).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from ..errors import VkharpError

RULES = {"ce": 0, "first-mismatch": 1, "mismatch-only": 2, "span": 3, "position-edit": 4, "target-only": 5}
DEFAULT_RULE = "first-mismatch"
DEFAULT_MARGIN = 0.1
DEFAULT_HOLD = 0.0
EDIT_NONE = 0xFFFFFFFF
EDIT_ARGMAX = 0xFFFFFFFE
STAT_FIELDS = {"loss": 0, "n_mismatch": 1, "first": 2, "norm": 3, "counted": 4, "nonfinite": 5}
STAT_WORDS = 8


@dataclass
class LossStats:
    loss: float
    n_mismatch: int
    first: int             # the first mismatching row, T when none
    norm: float            # the denominator the rule used
    counted: int           # rows with weight > 0
    nonfinite: int         # rows whose logits hold NaN or +inf
    pred: np.ndarray | None = None   # per-row prediction (argmax; argmin |z| for target-only)

    def check(self) -> "LossStats":
        """Raise a VkharpError that says what to do when the loss or the logits are not finite."""
        if self.nonfinite or not np.isfinite(self.loss):
            raise VkharpError(f"loss: the loss is {self.loss} and {self.nonfinite} rows of logits hold NaN or +inf: "
                              f"training diverged (lower the learning rate, or drop the adapter with /unfix); "
                              f"the base weights are untouched")
        return self


def rule_id(rule: str) -> int:
    if rule not in RULES:
        raise VkharpError(f"loss: unknown rule {rule!r}; choose one of {', '.join(RULES)}")
    return RULES[rule]


def unpack_stats(words, rows: int) -> LossStats:
    """The shader's stats words → LossStats (pred when the buffer held STAT_WORDS + rows words)."""
    w = np.asarray(words).view(np.uint32).reshape(-1)
    f = w.view(np.float32)
    pred = w[STAT_WORDS:STAT_WORDS + rows].astype(np.int64) if w.size >= STAT_WORDS + rows else None
    return LossStats(float(f[0]), int(w[1]), int(w[2]), float(f[3]), int(w[4]), int(w[5]), pred)


def span_weights(offsets, spans, weight: float, *, base: float = 1.0) -> np.ndarray:
    """Per-row weights for `span`: rows whose answer token overlaps a chosen character span get
    `weight`, the others `base`.

    offsets: each answer token's character range in the answer, as (start, end) pairs (row t is
    token t), or a 1-D sequence of T + 1 boundaries. spans: (start, end) character ranges.
    A token overlaps [s, e) when start < e and s < end (an empty token: when s <= start < e)."""
    off = np.asarray(offsets, dtype=np.int64)
    if off.ndim == 1:
        if off.size < 1 or np.any(np.diff(off) < 0):
            raise VkharpError("span_weights: boundaries must be a non-decreasing sequence of T + 1 offsets")
        off = np.stack([off[:-1], off[1:]], axis=1)
    if off.ndim != 2 or off.shape[1] != 2:
        raise VkharpError(f"span_weights: offsets must be (start, end) pairs or T + 1 boundaries, got shape {off.shape}")
    w = np.full(off.shape[0], base, np.float32)
    for s, e in spans:
        if e < s:
            raise VkharpError(f"span_weights: span ({s}, {e}) ends before it starts")
        hit = np.where(off[:, 1] > off[:, 0], (off[:, 0] < e) & (s < off[:, 1]), (s <= off[:, 0]) & (off[:, 0] < e))
        w[hit] = weight
    return w


def position_edit_targets(said, changes: dict) -> tuple[np.ndarray, np.ndarray]:
    """targets and edits (u32, one per row) for position-edit: rows 0..max(changes) of the answer
    the model `said` (token ids), with `changes` {position: wanted token} applied; each changed
    row's wrong token is what was said there. Later rows (and the EOS) are left out."""
    said = [int(t) for t in said]
    if not changes:
        raise VkharpError("position-edit: no positions to change")
    last = max(changes)
    if min(changes) < 0 or last >= len(said):
        raise VkharpError(f"position-edit: positions {sorted(changes)} must lie within the answer's {len(said)} tokens")
    targets = np.array(said[:last + 1], np.uint32)
    edits = np.full(last + 1, EDIT_NONE, np.uint32)
    for pos, tok in changes.items():
        targets[pos], edits[pos] = int(tok), said[pos]
    return targets, edits


def _check(logits, targets, weights, rule, base, edits):
    z = np.asarray(logits, np.float32)
    if z.ndim != 2:
        raise VkharpError(f"loss: logits must be [T, V], got shape {z.shape}")
    T, V = z.shape
    y = np.asarray(targets).astype(np.int64).reshape(-1)
    w = np.asarray(weights, np.float64).reshape(-1)
    if y.size != T or w.size != T:
        raise VkharpError(f"loss: targets ({y.size}) and weights ({w.size}) must have one entry per row ({T})")
    if np.any((y < 0) | (y >= V)):
        raise VkharpError(f"loss: targets must be token ids below V = {V}")
    rid = rule_id(rule)
    b = e = None
    if rid == RULES["position-edit"]:
        if base is None or edits is None:
            raise VkharpError("loss: position-edit needs `base` (the untuned model's logits) and `edits`")
        b = np.asarray(base, np.float32)
        e = np.asarray(edits).astype(np.int64).reshape(-1)
        if b.shape != z.shape or e.size != T:
            raise VkharpError(f"loss: base {b.shape} must match logits {z.shape}, edits must have {T} entries")
    return z, y, w, rid, b, e


def soft_targets(base, targets, edits, *, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """position-edit's q_t for every row (the construction in the module doc), float64 [T, V]."""
    b = np.asarray(base, np.float64)
    pi = np.exp(b - b.max(-1, keepdims=True))
    pi /= pi.sum(-1, keepdims=True)
    q = pi.copy()
    for t, (y, u) in enumerate(zip(np.asarray(targets).astype(np.int64), np.asarray(edits).astype(np.int64))):
        if u == EDIT_NONE:
            continue
        if u == EDIT_ARGMAX:
            u = int(np.argmax(b[t]))
        if not 0 <= u < b.shape[1]:
            raise VkharpError(f"loss: edits[{t}] = {u} is not a token id, EDIT_NONE or EDIT_ARGMAX")
        row = pi[t]
        moved = row[u] if u != y else 0.0
        others = np.ones(row.size, bool)
        others[[y, u]] = False
        M = row[others].max() if others.any() else 0.0
        Y = max(row[y] + moved, M + margin)
        Z = 1.0 - row[y] - moved + Y
        q[t] = row / Z
        q[t, u] = 0.0
        q[t, y] = Y / Z
    return q


def predictions(logits, rule: str) -> np.ndarray:
    z = np.asarray(logits, np.float32)
    return np.argmin(np.abs(z), -1) if rule_id(rule) == RULES["target-only"] else np.argmax(z, -1)


def check_hold(hold) -> float:
    """hold as a float, or a VkharpError: it must be a finite number >= 0 (logit units)."""
    h = float(hold) if isinstance(hold, numbers.Real) and not isinstance(hold, bool) else float("nan")
    if not np.isfinite(h) or h < 0:
        raise VkharpError(f"loss: hold must be a finite number >= 0 (how many logits the target must lead "
                          f"by; 0 turns it off), got {hold!r}")
    return h


def rivals(logits, targets, rule: str) -> tuple[np.ndarray, np.ndarray]:
    """(r_t, gap_t) of the module doc: the strongest wrong token per row (-1 when V = 1) and
    k_ty - k_tr in f32 (+inf when there is no r_t)."""
    z = np.asarray(logits, np.float32)
    T, V = z.shape
    y = np.asarray(targets).astype(np.int64).reshape(-1)
    key = -np.abs(z) if rule_id(rule) == RULES["target-only"] else z
    rows = np.arange(T)
    others = np.where(np.arange(V)[None, :] == y[:, None], np.float32(-np.inf), key)
    r = np.argmax(others, -1)
    # a row whose other keys are all -inf: the shader keeps the first v != y it saw
    r = np.where(r == y, np.where(y == 0, 1, 0), r) if V > 1 else np.full(T, -1)
    with np.errstate(invalid="ignore"):
        gap = (key[rows, y] - key[rows, np.maximum(r, 0)]).astype(np.float32) if V > 1 \
            else np.full(T, np.inf, np.float32)
    return r, gap


def loss(logits, targets, weights, *, rule: str = DEFAULT_RULE, base=None, edits=None,
         margin: float = DEFAULT_MARGIN, hold: float = DEFAULT_HOLD) -> tuple[np.ndarray, LossStats]:
    """(dlogits f32[T, V], LossStats) for one rule of the module doc (float64 inside)."""
    z32, y, w, rid, b, e = _check(logits, targets, weights, rule, base, edits)
    hold32 = np.float32(check_hold(hold))
    T, V = z32.shape
    z = z32.astype(np.float64)
    rows = np.arange(T)
    pred = predictions(z32, rule)
    rival, gap = rivals(z32, y, rule)
    nonfinite = int(np.sum(np.any(np.isnan(z32) | np.isposinf(z32), -1)))
    counted = w > 0
    mism = counted & ((pred != y) | (gap < hold32))
    first = int(np.argmax(mism)) if mism.any() else T
    W, N = float(w.sum()), int(counted.sum())
    g = np.zeros((T, V))
    if rid == RULES["target-only"]:
        norm = float(N)
        zy = z[rows, y]
        L = float((w * zy ** 2).sum() / norm)
        g[rows, y] = 2.0 * zy * w / norm
        return g.astype(np.float32), LossStats(L, int(mism.sum()), first, norm, N, nonfinite, pred)
    m = z.max(-1, keepdims=True)
    ez = np.exp(z - m)
    S = ez.sum(-1, keepdims=True)
    p = ez / S
    ce = (np.log(S[:, 0]) + m[:, 0]) - z[rows, y]
    onehot = np.zeros((T, V))
    onehot[rows, y] = 1.0
    if rid == RULES["first-mismatch"]:
        norm, L = 1.0, 0.0
        if first < T:
            t, r = first, rival[first]          # r = pred[t] when pred[t] != y[t]
            rest = ez[t].copy()
            rest[r] = 0.0
            Sp = max(rest.sum(), np.finfo(np.float32).tiny)
            L = float(w[t] * (ce[t] + np.log(S[t, 0]) - np.log(Sp)))
            g[t] = w[t] * (2.0 * p[t] - onehot[t] - rest / Sp)
    elif rid == RULES["position-edit"]:
        norm = W
        q = soft_targets(b, y, e, margin=margin)
        cross = np.log(S[:, 0]) - (q * (z - m)).sum(-1)
        c = w / W if W > 0 else np.zeros(T)
        L = float((c * cross).sum())
        g = c[:, None] * (p - q)
    else:
        norm = float(N) if rid == RULES["span"] else W
        keep = mism if rid == RULES["mismatch-only"] else np.ones(T, bool)
        c = np.where(keep, w, 0.0) / norm if norm > 0 else np.zeros(T)
        L = float((c * ce).sum())
        g = c[:, None] * (p - onehot)
    return g.astype(np.float32), LossStats(L, int(mism.sum()), first, norm, N, nonfinite, pred)
