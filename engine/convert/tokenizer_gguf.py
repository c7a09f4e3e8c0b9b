"""A `tokenizers` tokenizer.json (plus tokenizer_config.json, generation_config.json, chat template)
rebuilt from a GGUF file's tokenizer metadata, tokenizing as llama.cpp does.

- `gpt2` (byte-level BPE: SmolLM, Llama 3, Qwen2): vocab and merges as stored; the pre-tokenizer
  regexes of llama.cpp's `tokenizer.ggml.pre` type (smollm splits digits one by one, llama3 and
  qwen2 have their own patterns).
- `llama` (SentencePiece-style: Llama 2, TinyLlama, Gemma): a BPE with byte fallback whose merges are
  derived from the vocabulary — every split of a token into two tokens, ranked by the merged token's
  score (llama.cpp's SPM merges the adjacent pair whose concatenation scores best). Spaces become
  "▁"; a "▁" is prepended when `add_space_prefix`. Gemma's runs of spaces and newlines are
  USER_DEFINED tokens spelled with real spaces: matched whole in the raw text, as llama.cpp does.
- Token types: CONTROL and UNKNOWN become special added tokens, USER_DEFINED plain added tokens
  (llama.cpp matches both whole in the raw text before tokenizing the rest).
- BOS/EOS are added by the tokenizer.json post-processor when the file says so (add_bos_token):
  encode a rendered chat template with add_special_tokens=False, as transformers does.
"""
from __future__ import annotations

import json

from ..errors import VkharpError

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# llama.cpp's pre-tokenizer regexes by tokenizer.ggml.pre (src/llama-vocab.cpp), applied in order.
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
           r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
_QWEN2 = (r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
PRE_REGEXES = {
    "gpt-2": [_GPT2], "default": [_GPT2],
    "smollm": [r"\p{N}", _GPT2], "starcoder": [r"\p{N}", _GPT2], "refact": [r"\p{N}", _GPT2],
    "codeshell": [r"\p{N}", _GPT2], "command-r": [r"\p{N}", _GPT2],
    "llama-bpe": [_LLAMA3], "llama3": [_LLAMA3], "llama-v3": [_LLAMA3], "smaug-bpe": [_LLAMA3],
    "falcon3": [_LLAMA3], "dbrx": [_LLAMA3],
    "qwen2": [_QWEN2], "deepseek-r1-qwen": [_QWEN2],
}
# Tokens that end a generation besides eos (llama.cpp's end-of-generation names).
EOG_NAMES = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>",
             "<|end_of_text|>"}


def _array(reader, key):
    from .gguf import field_value
    f = reader.fields.get(key)
    return None if f is None else field_value(f)


def build_tokenizer_files(reader, meta: dict, config: dict) -> dict[str, bytes]:
    tokens = _array(reader, "tokenizer.ggml.tokens")
    if not tokens:
        raise VkharpError("the GGUF file has no tokenizer (tokenizer.ggml.tokens); vkharp needs one")
    types = _array(reader, "tokenizer.ggml.token_type") or [NORMAL] * len(tokens)
    kind = meta.get("tokenizer.ggml.model")
    if kind == "gpt2":
        add_space_prefix = False
        tok = byte_level_bpe(tokens, _array(reader, "tokenizer.ggml.merges") or [], meta.get("tokenizer.ggml.pre"))
        add_bos_default = False
    elif kind == "llama":
        scores = _array(reader, "tokenizer.ggml.scores")
        if scores is None:
            raise VkharpError("the GGUF SentencePiece tokenizer has no scores (tokenizer.ggml.scores)")
        add_space_prefix = bool(meta.get("tokenizer.ggml.add_space_prefix", True))
        tok = sentencepiece_bpe(tokens, scores, types, meta.get("tokenizer.ggml.unknown_token_id"),
                                add_space_prefix)
        add_bos_default = True
    else:
        raise VkharpError(f"GGUF tokenizer model {kind!r} is not supported (supported: gpt2, llama)")
    add_special_tokens(tok, tokens, types)

    def name(key):
        i = meta.get(f"tokenizer.ggml.{key}")
        return (i, tokens[i]) if i is not None and 0 <= i < len(tokens) else (None, None)

    bos, eos, unk, pad = name("bos_token_id"), name("eos_token_id"), name("unknown_token_id"), name("padding_token_id")
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", add_bos_default))
    add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False))
    set_post_processor(tok, bos if add_bos else (None, None), eos if add_eos else (None, None))
    template = _array(reader, "tokenizer.chat_template")
    tok_cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos[1], "eos_token": eos[1],
               "unk_token": unk[1], "pad_token": pad[1], "add_bos_token": add_bos, "add_eos_token": add_eos,
               "model_max_length": config.get("max_position_embeddings"), "clean_up_tokenization_spaces": False}
    if template:
        tok_cfg["chat_template"] = template
    eog = [i for i in (eos[0], meta.get("tokenizer.ggml.eot_token_id"), meta.get("tokenizer.ggml.eom_token_id"))
           if i is not None]
    eog += [i for i, (t, ty) in enumerate(zip(tokens, types)) if ty == CONTROL and t in EOG_NAMES]
    eog = list(dict.fromkeys(eog))
    gen = {"bos_token_id": bos[0], "eos_token_id": eog[0] if len(eog) == 1 else eog}
    if pad[0] is not None:
        gen["pad_token_id"] = pad[0]
    out = {"tokenizer.json": tok.to_str().encode(),
           "tokenizer_config.json": (json.dumps(tok_cfg, indent=2, ensure_ascii=False) + "\n").encode(),
           "generation_config.json": (json.dumps(gen, indent=2) + "\n").encode()}
    if template:
        out["chat_template.jinja"] = template.encode()
    return out


def byte_level_bpe(tokens: list[str], merges: list[str], pre: str | None):
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    regexes = PRE_REGEXES.get(pre or "default")
    if regexes is None:
        raise VkharpError(f"GGUF pre-tokenizer {pre!r} is not supported; supported: {', '.join(sorted(PRE_REGEXES))}")
    vocab = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(r), behavior="isolated") for r in regexes]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    return tok


def spm_merges(tokens: list[str], scores: list[float], mergeable: list[bool]) -> list[tuple[str, str]]:
    """Every (left, right) whose concatenation is a token, best merged score first (ties: lower id)."""
    vocab = {}
    for i, t in enumerate(tokens):
        if mergeable[i]:
            vocab.setdefault(t, i)
    ranked = []
    for t, i in vocab.items():
        for k in range(1, len(t)):
            left, right = t[:k], t[k:]
            li, ri = vocab.get(left), vocab.get(right)
            if li is not None and ri is not None:
                ranked.append((-scores[i], i, li, left, right))
    ranked.sort()
    return [(left, right) for _, _, _, left, right in ranked]


def sentencepiece_bpe(tokens: list[str], scores: list[float], types: list[int], unk_id: int | None,
                      add_space_prefix: bool):
    from tokenizers import Tokenizer, decoders, models, normalizers
    mergeable = [ty == NORMAL for ty in types]
    merges = spm_merges(tokens, scores, mergeable)
    vocab = {}
    for i, t in enumerate(tokens):
        vocab.setdefault(t, i)
    unk = tokens[unk_id] if unk_id is not None and 0 <= unk_id < len(tokens) else None
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True, byte_fallback=True))
    replace = normalizers.Replace(" ", "▁")
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), replace]) if add_space_prefix else replace
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_space_prefix:
        steps.append(decoders.Strip(" ", 1, 0))
    tok.decoder = decoders.Sequence(steps)
    return tok


def add_special_tokens(tok, tokens: list[str], types: list[int]) -> None:
    from tokenizers import AddedToken
    vocab = tok.get_vocab()
    special = [AddedToken(t, special=True, normalized=False) for t, ty in zip(tokens, types)
               if ty in (CONTROL, UNKNOWN) and t in vocab]
    user = [AddedToken(t, special=False, normalized=False) for t, ty in zip(tokens, types)
            if ty == USER_DEFINED and t in vocab]
    if special:
        tok.add_special_tokens(special)
    if user:
        tok.add_tokens(user)


def set_post_processor(tok, bos: tuple, eos: tuple) -> None:
    from tokenizers import processors
    if bos[0] is None and eos[0] is None:
        return
    pre = [bos[1]] if bos[0] is not None else []
    post = [eos[1]] if eos[0] is not None else []
    single = " ".join(pre + ["$A"] + post)
    pair = " ".join(pre + ["$A"] + post + pre + ["$B:1"] + post)
    specials = [x for x in (bos, eos) if x[0] is not None]
    tok.post_processor = processors.TemplateProcessing(single=single, pair=pair,
                                                       special_tokens=list(dict.fromkeys((t, i) for i, t in specials)))
