"""Tokenizer (HF `tokenizers`), chat templates (sandboxed and bounded jinja2, engine/chat_template.py)
and streaming detokenization.

Reads a converted model directory (or a HF directory): tokenizer.json, tokenizer_config.json
(special tokens, add_bos, chat_template), chat_template.jinja, generation_config.json (eos ids).
"""
from __future__ import annotations

import json
from pathlib import Path

from .chat_template import TemplateFailure, render as render_chat_template
from .errors import VkharpError


def _read_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VkharpError(f"{path} is not valid JSON ({exc}); re-run `vkharp convert`") from None


def _token_text(tok) -> str | None:
    if tok is None:
        return None
    if isinstance(tok, dict):  # AddedToken serialisation
        return tok.get("content")
    return str(tok)


class Tokenizer:
    def __init__(self, model_dir: str | Path):
        from tokenizers import Tokenizer as HFTokenizer
        d = Path(model_dir)
        path = d / "tokenizer.json"
        if not path.exists():
            raise VkharpError(f"{d} has no tokenizer.json; convert the model with `vkharp convert` "
                              f"(HF directories need a fast tokenizer.json)")
        try:
            self.tk = HFTokenizer.from_file(str(path))
        except Exception as exc:
            raise VkharpError(f"{path} could not be loaded by `tokenizers`: {exc}") from None
        cfg = _read_json(d / "tokenizer_config.json")
        gen = _read_json(d / "generation_config.json")
        self.bos_token = _token_text(cfg.get("bos_token"))
        self.eos_token = _token_text(cfg.get("eos_token"))
        self.bos_id = self.tk.token_to_id(self.bos_token) if self.bos_token else None
        self.add_bos = bool(cfg.get("add_bos_token", False)) and self.bos_id is not None
        eos = set()
        if self.eos_token and self.tk.token_to_id(self.eos_token) is not None:
            eos.add(self.tk.token_to_id(self.eos_token))
        ge = gen.get("eos_token_id")
        eos.update(ge if isinstance(ge, list) else [ge] if ge is not None else [])
        self.eos_ids = frozenset(int(e) for e in eos)
        template = cfg.get("chat_template")
        if isinstance(template, list):  # named templates: take "default"
            template = next((t.get("template") for t in template if isinstance(t, dict) and t.get("name") == "default"),
                            None)
        self.template_source = d / "tokenizer_config.json"
        tpl_file = d / "chat_template.jinja"
        if tpl_file.exists():
            try:
                template = tpl_file.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise VkharpError(f"{tpl_file} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                                  f"fix or replace it") from None
            self.template_source = tpl_file
        if template is not None and not isinstance(template, str):
            raise VkharpError(f"the chat template in {self.template_source} is not text; fix or replace it")
        self.chat_template = template

    @property
    def vocab_size(self) -> int:
        return self.tk.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, add_bos: bool | None = None) -> list[int]:
        """Token ids of `text`; a BOS is prepended when the model asks for one (and not already there)."""
        ids = self.tk.encode(text, add_special_tokens=False).ids
        if (self.add_bos if add_bos is None else add_bos) and self.bos_id is not None:
            if not ids or ids[0] != self.bos_id:
                ids = [self.bos_id] + ids
        return ids

    def decode(self, ids, skip_special: bool = False) -> str:
        return self.tk.decode(list(ids), skip_special_tokens=skip_special)

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The conversation as the model's template renders it; a failure names the template's file."""
        if not self.chat_template:
            raise VkharpError("this model has no chat template; use plain generation (without --chat)")
        try:
            return render_chat_template(self.chat_template, messages, add_generation_prompt=add_generation_prompt,
                                        bos_token=self.bos_token or "", eos_token=self.eos_token or "")
        except TemplateFailure as exc:
            raise type(exc)(f"{exc}; fix or replace the template in {self.template_source}") from None

    def streamer(self) -> "StreamDecoder":
        return StreamDecoder(self)


class StreamDecoder:
    """Turns a stream of token ids into text pieces, holding back incomplete UTF-8 sequences."""

    def __init__(self, tok: Tokenizer):
        self.tok, self.ids, self.emitted = tok, [], 0
        self._text = ""

    def push(self, token_id: int) -> str:
        self.ids.append(int(token_id))
        text = self.tok.decode(self.ids)
        if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for the next token
            return ""
        piece, self._text = text[len(self._text):], text
        return piece

    def reset(self):
        self.ids, self._text = [], ""
