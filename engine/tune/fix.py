"""Corrections: "the answer to this prompt should have been TEXT", turned into training examples and
kept in force in one adapter (the chat's /fix, `vkharp tune`, the server's loaded adapters).

An answer's target tokens are what the chat template puts after the prompt for an assistant message
TEXT: the text and the end-of-turn token (SmolLM2's "<|im_end|>"), so that the fixed model also stops
where TEXT does. A correction that continues a kept prefix of the last answer ("PREFIX|TEXT") has no
end-of-turn token: the answer goes on from there, as the seed's example has no EOS.

Earlier corrections stay in force: after the new one is learnt, every correction is checked, and
those a later one broke are trained again together with it until all hold (or the step limit).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


from ..errors import VkharpError
from .lora import Adapter
from .trainer import Example, FitResult, Trainer, TuneSettings

DEFAULT_RANK = 8


def answer_ids(tokenizer, messages: list[dict], answer: str, *, end_turn: bool = True) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids) for `answer` as the assistant's reply to `messages`."""
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
    p_ids = tokenizer.encode(prompt)
    if not end_turn:
        ids = tokenizer.encode(answer, add_bos=False)
    else:
        full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": answer}],
                                             add_generation_prompt=False)
        if full.startswith(prompt):
            ids = tokenizer.encode(full[len(prompt):], add_bos=False)
            stops = [i for i, t in enumerate(ids) if t in tokenizer.eos_ids]
            ids = ids[:stops[0] + 1] if stops else ids
        else:   # a template that rewrites earlier turns: the text, then the first end-of-sequence id
            ids = tokenizer.encode(answer, add_bos=False) + sorted(tokenizer.eos_ids)[:1]
    if not tokenizer.encode(answer, add_bos=False):
        raise VkharpError("the correction tokenizes to nothing: give the text the answer should have been")
    return p_ids, ids


@dataclass
class Correction:
    prompt: str                 # the user's message (what /fixes shows)
    answer: str                 # what the answer should have been (from the kept prefix on, if any)
    prompt_ids: list
    answer_ids: list
    steps: int = 0

    def example(self) -> Example:
        return Example.of(self.prompt_ids, self.answer_ids, text=self.answer)

    def to_json(self) -> dict:
        return {"prompt": self.prompt, "answer": self.answer, "prompt_ids": list(map(int, self.prompt_ids)),
                "answer_ids": list(map(int, self.answer_ids)), "steps": self.steps}

    @classmethod
    def from_json(cls, d: dict) -> "Correction":
        return cls(d["prompt"], d["answer"], list(d["prompt_ids"]), list(d["answer_ids"]), int(d.get("steps", 0)))


class Tuner:
    """One model's corrections in force and the adapter that holds them."""

    def __init__(self, model, settings: TuneSettings | None = None, *, rank: int = DEFAULT_RANK,
                 adapter: Adapter | None = None, path: str | Path | None = None, keep_earlier: bool = True):
        self.model, self.settings, self.rank = model, settings or TuneSettings(), rank
        self.keep_earlier = keep_earlier     # retrain corrections a later one broke (tools/tune_eval.py: off)
        self.path = Path(path) if path is not None else None
        self.adapter = adapter
        self.trainer: Trainer | None = None
        self.corrections = [Correction.from_json(c) for c in adapter.corrections] if adapter is not None else []
        if adapter is not None:
            model.set_adapter(adapter)

    @classmethod
    def load(cls, model, path: str | Path, settings: TuneSettings | None = None) -> "Tuner":
        return cls(model, settings, adapter=Adapter.load(model, path), path=path)

    def _ensure(self):
        if self.adapter is None:
            self.adapter = Adapter(self.model, rank=self.rank, alpha=2.0 * self.rank)
            self.model.set_adapter(self.adapter)
        if self.trainer is None:
            self.trainer = Trainer(self.model, self.adapter, self.settings)

    def fix(self, correction: Correction, *, max_steps: int = 60, on_step=None) -> FitResult:
        """Learn one correction, then make every correction in force hold again (up to max_steps in all)."""
        self._ensure()
        before = self.adapter_arrays()
        try:
            result = self.trainer.fit(correction.example(), max_steps=max_steps, on_step=on_step)
            correction.steps = result.steps
            others = [c.example() for c in self.corrections]
            left = max_steps - result.steps
            if self.keep_earlier and result.success and others and left > 0:
                broken = [e for e in others if self.trainer.evaluate(e).n_mismatch]
                if broken:
                    again = self.trainer.fit([correction.example()] + others, max_steps=left, on_step=on_step)
                    result = FitResult(again.success, result.steps + again.steps, result.seconds + again.seconds,
                                       result.reports + again.reports)
        except BaseException:
            self.restore(before)     # a NaN, an explosion, Ctrl-C: the adapter as it was before this fix
            raise
        self.corrections.append(correction)
        self.adapter.corrections = [c.to_json() for c in self.corrections]
        self.model.reset()           # every cached position was computed with the old adapter
        return result

    def adapter_arrays(self) -> dict | None:
        if self.adapter is None:
            return None
        return {n: m.parts[0].qs.read().copy() for n, m in self.adapter.params()}

    def restore(self, arrays: dict | None) -> None:
        if self.adapter is None or arrays is None:
            return
        for n, m in self.adapter.params():
            m.parts[0].qs.write(arrays[n])
        self.model.reset()

    def check(self) -> list[tuple[Correction, bool]]:
        """Whether each correction in force still holds (teacher-forced greedy)."""
        if not self.corrections:
            return []
        self._ensure()
        return [(c, self.trainer.evaluate(c.example()).n_mismatch == 0) for c in self.corrections]

    def drop(self) -> None:
        """/unfix: the base model again (the saved file stays)."""
        self.model.set_adapter(None)
        self.adapter, self.trainer, self.corrections = None, None, []

    def save(self, path: str | Path | None = None) -> Path | None:
        if self.adapter is None:
            return None
        path = Path(path) if path is not None else self.path
        if path is None:
            raise VkharpError("no adapter path: pass one (--adapter PATH)")
        self.path = self.adapter.save(path)
        return self.path


def default_adapter_path(model) -> Path:
    """Beside the model: MODEL_DIR/adapters/chat."""
    return Path(model.path) / "adapters" / "chat"


