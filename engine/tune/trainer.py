"""Training an adapter on the device: examples, the step loop, the optimizer and when to stop.

A step replays three recorded programs (engine/tune/program.py): forward + loss, then, unless the
rule found nothing to fix, backward and one AdamW step. Across the host↔device boundary go only the
example's ids (a few hundred bytes), the loss rule's stats, the partial sums of the squared gradients
(the host turns them into the global norm and the clip factor) and the optimizer's two counts per
matrix (the fraction of elements the gradient threshold let through, seed idea 5).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .. import ops
from ..errors import VkharpError
from ..hyper import HYPER_WORDS, pack_hyper
from ..reference.loss import DEFAULT_MARGIN, DEFAULT_RULE, EDIT_ARGMAX, EDIT_NONE, RULES, LossStats
from ..ops.copy_rows import copy_block
from .program import TrainProgram

EXPLODED = 1e8    # a gradient norm above this (or not finite) stops training with an error


@dataclass
class Example:
    """One sequence: the prompt's and the answer's tokens; the answer's are the targets."""
    ids: np.ndarray
    start: int                            # index of the first answer token (≥ 1)
    weights: np.ndarray | None = None     # per answer token (the span rule; default 1)
    edits: np.ndarray | None = None       # position-edit: per answer token, the wrong token or EDIT_NONE
    text: str = ""

    def __post_init__(self):
        self.ids = np.asarray(self.ids, np.uint32)
        if not 1 <= self.start < len(self.ids):
            raise VkharpError(f"an example needs a prompt and at least one answer token; got {len(self.ids)} "
                              f"tokens with the answer from {self.start}")
        n = len(self.ids) - self.start
        for name in ("weights", "edits"):
            v = getattr(self, name)
            if v is not None and len(v) != n:
                raise VkharpError(f"{name} has {len(v)} entries for an answer of {n} tokens")

    @classmethod
    def of(cls, prompt_ids, answer_ids, **kw) -> "Example":
        if len(answer_ids) == 0:
            raise VkharpError("the correction tokenizes to nothing: give the text the answer should have been")
        return cls(np.concatenate([np.asarray(prompt_ids, np.uint32), np.asarray(answer_ids, np.uint32)]),
                   len(prompt_ids), **kw)

    @property
    def rows(self) -> np.ndarray:
        return np.arange(self.start - 1, len(self.ids) - 1, dtype=np.uint32)

    @property
    def targets(self) -> np.ndarray:
        return self.ids[self.start:]


@dataclass
class TuneSettings:
    rule: str = DEFAULT_RULE
    lr: float = 2e-3
    threshold: float = 0.0          # seed idea 5: elements whose |gradient| is below it do not move
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0      # global-norm clip
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    margin: float = DEFAULT_MARGIN  # position-edit: how clearly the wanted token must lead
    hold: float = 1.0               # logits the target must lead the runner-up by for a row to count as
                                    # reproduced: greedy decoding (another, fused path) must not flip it

    def __post_init__(self):
        if self.rule not in RULES:
            raise VkharpError(f"unknown loss rule {self.rule!r}; the rules are {', '.join(RULES)}")
        for k in ("lr", "threshold", "weight_decay", "max_grad_norm", "margin", "hold"):
            v = getattr(self, k)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise VkharpError(f"tune setting {k} must be a finite number ≥ 0, got {v!r}")


@dataclass
class StepReport:
    step: int                 # optimizer steps taken so far (this one included when applied)
    loss: float
    mismatches: int           # answer rows whose prediction is not the target (teacher-forced)
    first: int                # the first of them (len(answer) when none)
    grad_norm: float = 0.0
    updated: int = 0          # elements the threshold let through
    seen: int = 0
    applied: bool = False     # whether the adapter changed
    seconds: float = 0.0

    @property
    def updated_fraction(self) -> float:
        return self.updated / self.seen if self.seen else 0.0


@dataclass
class FitResult:
    success: bool             # greedy decoding (teacher-forced) reproduces the answer
    steps: int
    seconds: float
    reports: list = field(default_factory=list)


def _bucket(n: int, least: int) -> int:
    b = least
    while b < n:
        b *= 2
    return b


class Trainer:
    """Trains `adapter` (attached to its model) with one rule and one optimizer state."""

    def __init__(self, model, adapter, settings: TuneSettings | None = None):
        self.model, self.ad = model, adapter
        self.settings = settings or TuneSettings()
        dev = model.device
        self.params = adapter.params()
        f32 = lambda like, what: dev.buffer(like.shape, np.float32, "act", name=f"tune.{what}")
        self.grads = {n: f32(m.parts[0].qs, f"grad[{n}]") for n, m in self.params}
        self.m = {n: f32(m.parts[0].qs, f"adam_m[{n}]") for n, m in self.params}
        self.v = {n: f32(m.parts[0].qs, f"adam_v[{n}]") for n, m in self.params}
        self.hyper = dev.buffer((HYPER_WORDS,), np.float32, "param", name="tune.hyper")
        self.counts = dev.buffer((2 * len(self.params),), np.uint32, "act", name="tune.counts")
        self.steps = 0
        self._programs: dict = {}
        self._bases: dict = {}     # position-edit: id(example) -> (example, its untuned logits on the device)
        self._copies: dict = {}
        rec = dev.recorder(name="tune.update")
        ops.zero_counts(rec, self.counts)
        with rec.parallel():
            for slot, (n, m) in enumerate(self.params):
                ops.adamw(rec, m.parts[0].qs, self.grads[n], self.m[n], self.v[n], self.hyper, self.counts, slot=slot)
        rec.download(self.counts)
        self._update = rec.finish()
        rec = dev.recorder(name="tune.zero_grads")
        with rec.parallel():
            for g in self.grads.values():
                ops.fill_u32(rec, g, value=0)   # 0.0f
        self._zero = rec.finish()

    def program(self, ex: Example) -> TrainProgram:
        if len(ex.ids) > self.model.ctx:
            raise VkharpError(f"the example has {len(ex.ids)} tokens, more than the context ({self.model.ctx}); "
                              f"shorten it or load the model with a larger -c")
        key = (_bucket(len(ex.ids), 64), _bucket(len(ex.targets), 16))
        if key not in self._programs:
            self._programs[key] = TrainProgram(self.model, self.ad, *key, self.grads, rule=self.settings.rule,
                                               margin=self.settings.margin, hold=self.settings.hold)
        prog = self._programs[key]
        weights = ex.weights if ex.weights is not None else np.ones(len(ex.targets), np.float32)
        # position-edit without explicit edits: every row's wrong token is what the model would say there
        # (EDIT_ARGMAX; a row it already gets right keeps its own distribution)
        edits = ex.edits if ex.edits is not None else np.full(
            len(ex.targets), EDIT_ARGMAX if self.settings.rule == "position-edit" else EDIT_NONE, np.uint32)
        prog.write_example(ex.ids, ex.rows, ex.targets, weights, edits)
        if prog.base is not None and id(ex) in self._bases:
            self._copy(prog.base, self._bases[id(ex)][1]).run()
        return prog

    def evaluate(self, ex: Example) -> LossStats:
        """The rule's stats for the example with the adapter as it is (nothing changes)."""
        prog = self.program(ex)
        prog.forward.run()
        return prog.read_stats().check()

    def keep_base(self, ex: Example) -> None:
        """position-edit: take the model's distributions on this example, as it is now, as the truth
        (kept on the device per example, and copied into the program's `base` before each of its steps)."""
        prog = self.program(ex)
        if prog.base is None or id(ex) in self._bases:
            return
        prog.forward.run()
        keep = self.model.device.buffer(prog.base.shape, np.float32, "act", name=f"tune.base[{len(self._bases)}]")
        self._bases[id(ex)] = (ex, keep)
        self._copy(keep, prog.logits).run()

    def _copy(self, dst, src):
        key = (id(dst), id(src))
        if key not in self._copies:
            rec = self.model.device.recorder(name="tune.copy")
            copy_block(rec, dst, src, src.size)
            self._copies[key] = (rec.finish(), dst, src)
        return self._copies[key][0]

    def step(self, batch, *, stop_when_reproduced: bool = True) -> StepReport:
        """One optimizer step over an example or a list of them (their gradients summed). Each runs
        forward + loss first; examples already reproduced (every answer row predicts its target,
        which is what greedy decoding of the answer needs) add nothing, and when none is left and
        stop_when_reproduced, nothing changes."""
        t0 = time.perf_counter()
        batch = [batch] if isinstance(batch, Example) else list(batch)
        rep = StepReport(self.steps, 0.0, 0, 0)
        ran = None
        for ex in batch:
            prog = self.program(ex)
            prog.forward.run()
            st = prog.read_stats().check()
            rep.loss += st.loss / len(batch)
            rep.mismatches += st.n_mismatch
            rep.first = st.first if len(batch) == 1 else rep.first
            if stop_when_reproduced and st.n_mismatch == 0:
                continue
            if ran is None:
                self._zero.run()
            prog.backward.run()
            ran = prog
        if ran is None:
            rep.seconds = time.perf_counter() - t0
            return rep
        sq = ran.grad_sumsq()
        norm = math.sqrt(sq) if sq >= 0 else float("nan")
        rep.grad_norm = norm
        if not math.isfinite(norm) or norm > EXPLODED:
            raise VkharpError(f"the gradient exploded (norm {norm:.3g}) at step {self.steps + 1}: the adapter is left "
                              f"as it was; lower the learning rate (now {self.settings.lr:g})")
        s = self.settings
        scale = min(1.0, s.max_grad_norm / norm) if s.max_grad_norm > 0 and norm > 0 else 1.0
        self.steps += 1
        self.hyper.host_view()[:] = pack_hyper(s.lr, s.beta1, s.beta2, s.eps, s.weight_decay, s.threshold,
                                               self.steps, scale)
        self._update.run()
        c = self.counts.host_view().reshape(-1, 2).astype(np.int64).sum(0)
        rep.step, rep.updated, rep.seen, rep.applied = self.steps, int(c[0]), int(c[1]), True
        rep.seconds = time.perf_counter() - t0
        return rep

    def fit(self, ex, *, max_steps: int = 60, on_step=None) -> FitResult:
        """Steps until the answer (or every answer of a list) is reproduced or max_steps optimizer
        steps were taken."""
        t0 = time.perf_counter()
        batch = [ex] if isinstance(ex, Example) else list(ex)
        for e in batch:
            self.keep_base(e)
        reports, start = [], self.steps
        while True:
            rep = self.step(batch)
            reports.append(rep)
            if on_step is not None:
                on_step(rep)
            if not rep.applied or self.steps - start >= max_steps:
                break
        done = not reports[-1].applied or all(self.evaluate(e).n_mismatch == 0 for e in batch)
        return FitResult(done, self.steps - start, time.perf_counter() - t0, reports)
