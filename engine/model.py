"""A loaded model: weights on the device, the KV cache, and the recorded forward programs.

    model = engine.load(path, device=None, ctx=2048)
    model.logits(token_ids)        # full logits [n, vocab] of a fresh run (tests, perplexity)
    model.prefill(token_ids)       # feed tokens into the cache in chunks; logits of the last one
    model.decode_logits(token_id)  # one decode step through the N=1 program; its logits
    model.reframe(...)             # HARP: a reframed pass over the held context, mixed logits

Programs are recorded lazily, once, and replayed: prefill (N = chunk) and decode (N = 1), each with
its own activations; only the step words and token ids go up per replay, and only what the caller
asks for comes back.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

from .device import Device
from .errors import VkharpError
from .forward import begin_program
from .harp import MAIN, REFRAMED, HarpPasses
from .kv_cache import KVCache
from . import ops
from .params import write_step
from .tokenizer import Tokenizer
from .weights import rows_fitting, stack_rows, upload_f32_stacked, upload_stacked

DEFAULT_CHUNK = 32
# load()'s prefill chunk for long prompts: a program's cost per token falls with its slots (fewer
# dispatches and barriers per token, wider token tiles split evenly over the driver's threads). On
# SmolLM2 at position 480 (timestamps): 10.2 ms per token in chunks of 32, 8.5 of 64, 7.3 of 128,
# 7.6 of 256. Short prompts keep chunks of 32: a program costs all its slots, valid or not.
LONG_CHUNK = 128
SAVED = "saved"     # logits kept on the device for a rollback's new draw (MAIN, REFRAMED: engine/harp.py)
EMBED = "embed"     # the sentence-vector passes' own cache (engine/embed/): the chat's stays as it is


# Matrices stacked by rows at load so that one dispatch computes them together (engine/forward.py):
# q, k, v into three outputs; gate and up into act(gate)·up.
FUSED_ROLES = {
    "self_attn.qkv_proj.weight": ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
    "mlp.gate_up_proj.weight": ("mlp.gate_proj.weight", "mlp.up_proj.weight"),
}


def _stacked(parts: list, name: str):
    """One layer's fused tensor: matrices stacked by rows (lossless), biases concatenated."""
    if isinstance(parts[0], np.ndarray):
        return np.concatenate([np.asarray(p).reshape(-1) for p in parts])
    return stack_rows(parts, name)


def weights_fingerprint(model_dir: Path) -> str:
    """16 hex digits naming a converted model's weights (its manifest's checksums), so that a renamed
    copy is the same model and a re-quantized one is not: what embedding stores and adapters record."""
    try:
        tensors = json.loads((Path(model_dir) / "manifest.json").read_text(encoding="utf-8")).get("tensors", {})
        sums = "".join(f"{n}:{t.get('sha256', '')};" for n, t in sorted(tensors.items()))
    except (OSError, ValueError):
        sums = str(Path(model_dir).resolve())
    return hashlib.sha256(sums.encode()).hexdigest()[:16]


class ContextFull(VkharpError):
    """The KV cache has no room for the tokens asked for."""


class Model(HarpPasses):
    def __init__(self, model_dir: str | Path, device: Device | None = None, *, ctx: int | None = None,
                 chunk: int = DEFAULT_CHUNK, progress: bool = False, fuse: bool = True, kv_type: str | None = None,
                 long_chunk: int | None = None):
        """chunk: prefill slots per program; long_chunk: slots of the program that takes a prompt's
        body while more than half of it remains (None: chunks only; load() gives LONG_CHUNK).
        fuse=False keeps q/k/v and gate/up as separate matrices (training every weight needs them
        so: engine/tune/scratch.py). kv_type: the KV cache's entries, "f16" or "f32"; None: f16 where
        the head dim allows it (a multiple of 8), as llama.cpp's default, else f32."""
        from engine.convert.format import open_model_dir

        t0 = time.perf_counter()
        self.path = Path(model_dir)
        reader = open_model_dir(self.path, verify="once")
        self.cfg, self.arch = reader.config, reader.architecture
        self.arch.validate(self.cfg)
        self.device = device or Device()
        self.tokenizer = Tokenizer(self.path)
        if ctx is not None and (isinstance(ctx, bool) or not isinstance(ctx, (int, np.integer)) or ctx < 1):
            raise VkharpError(f"ctx (the context size in tokens) must be an integer ≥ 1, got {ctx!r}; "
                              f"None takes the model's, up to 4096")
        self.ctx = int(ctx if ctx is not None else min(self.cfg.max_position_embeddings, 4096))
        if kv_type is not None:   # refused before any weight is uploaded
            from .ops.attention import check_kv_type
            check_kv_type(kv_type, self.cfg.head_dim)
        for what, n in (("chunk", chunk), ("long_chunk", long_chunk)):
            if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1):
                raise VkharpError(f"{what} (prefill slots per program) must be an integer ≥ 1, got {n!r}")
        self.chunk = int(chunk)
        self.long_chunk = int(long_chunk) if long_chunk is not None and long_chunk > chunk else None
        # Global tensors by HF name; per-layer tensors stacked by role ("self_attn.q_proj.weight"), so
        # that one pipeline serves every layer (see engine/weights.py).
        self.weights: dict = {}
        self.layer_weights: dict = {}
        self.weight_bytes = 0
        L = self.cfg.num_hidden_layers
        roles = list(self.arch.layer_tensor_shapes(self.cfg))
        globals_ = [n for n in self.arch.tensor_shapes(self.cfg) if not n.startswith("model.layers.")]
        fused = self._fusable(reader, roles, L) if fuse else {}
        members = {m for group in fused.values() for m in group}
        items = ([("global", n, None) for n in globals_] + [("fused", r, g) for r, g in fused.items()]
                 + [("f32" if self.arch.stored_f32(r) else "layer", r, None) for r in roles if r not in members])
        if progress:
            from tqdm import tqdm
            items = tqdm(items, desc="loading weights", unit="tensor", leave=False)
        for kind, name, group in items:
            if kind == "global":
                self.weights[name] = self._upload(name, lambda _, n=name: reader.load(n), 1)
            elif kind == "fused":
                self.layer_weights[name] = self._upload(
                    name, lambda i, g=group: _stacked([reader.load(f"model.layers.{i}.{m}") for m in g], name), L)
            elif kind == "f32":      # plain floats stacked by layer (Local1D weights: engine/forward.py)
                w32 = upload_f32_stacked(self.device, lambda i, r=name: reader.load(f"model.layers.{i}.{r}"), L, name)
                self.layer_weights[name] = w32
                self.weight_bytes += w32.nbytes
            else:
                self.layer_weights[name] = self._upload(name, lambda i, r=name: reader.load(f"model.layers.{i}.{r}"), L)
        if kv_type is None:
            kv_type = "f16" if self.cfg.head_dim % 8 == 0 else "f32"
        self.kv_type = kv_type
        self.kv = self._new_cache()
        # RoPE inverse frequencies, stacked [L, rotary_dim/2] (Gemma's local and global layers differ;
        # longrope's factor set depends on the context)
        freqs = np.stack([np.asarray(self.arch.layer_inv_freq(self.cfg, i, ctx=self.ctx), np.float32)
                          for i in range(L)])
        self.inv_freq = self.device.upload(freqs, "inv_freq")
        self._programs: dict = {}
        self._recorded: dict = {}
        self._acts: dict = {}                      # activation buffers by (n, head, cache): kept across re-recordings
        self.adapter = None                        # LoRA weights added to every adapted product (engine/tune/)
        self._sample_work = None
        self._last_logits: dict = {}
        self._reframed: KVCache | None = None      # HARP's scratch cache (engine/harp.py)
        self._reframed_key = None                  # (seed, delta) its positions were computed with
        self._embed_kv: KVCache | None = None      # the embedding passes' cache (engine/embed/)
        self.pooling: str | None = None            # default pooling of embed(); None: engine/embed's
        self._sampled_from = None                  # which logits buffer the sampler last read
        self._sio = None                           # buffers of the stand-alone sampling programs
        self._mixed_words = None                   # the two-stream step's draw from the mixed logits
        self.load_seconds = time.perf_counter() - t0

    def _fusable(self, reader, roles: list[str], n_layers: int) -> dict[str, tuple[str, ...]]:
        """Matrices that one dispatch can compute together, stacked by rows at load ([Wq; Wk; Wv] with
        their biases, [Wg; Wu]): each layer's members must share one format (mixed GGUFs may differ),
        and [Wg; Wu] must fit one buffer per layer (its GLU epilogue pairs rows within a part).
        VKHARP_FUSE=0 keeps them apart (the fidelity tests compare both)."""
        import os
        if os.environ.get("VKHARP_FUSE", "1") == "0":
            return {}
        shapes = self.arch.layer_tensor_shapes(self.cfg)
        groups = {}
        for fused, mats in FUSED_ROLES.items():
            if not all(m in roles for m in mats):
                continue
            formats = [{reader.format(f"model.layers.{i}.{m}") for m in mats} for i in range(n_layers)]
            if any(len(f) > 1 for f in formats):
                continue
            if fused == "mlp.gate_up_proj.weight":
                rows, cols = sum(shapes[m][0] for m in mats), shapes[mats[0]][1]
                if any(rows_fitting(f.pop(), cols, self.device.max_buffer_bytes) < rows for f in formats):
                    continue
            groups[fused] = mats
            biases = tuple(m.replace(".weight", ".bias") for m in mats)
            if all(b in roles for b in biases):
                groups[fused.replace(".weight", ".bias")] = biases
        return groups

    def _upload(self, name: str, load, n_layers: int):
        """Upload one tensor, or one tensor of every layer stacked; 1-D tensors become f32 [L, n] buffers."""
        first = load(0)
        if isinstance(first, np.ndarray):
            arr = np.stack([first] + [load(i) for i in range(1, n_layers)]).astype(np.float32)
            buf = self.device.upload(arr if n_layers > 1 else arr[0], name)
            self.weight_bytes += buf.nbytes
            return buf
        w = upload_stacked(self.device, lambda i: first if i == 0 else load(i), n_layers, name)
        self.weight_bytes += w.nbytes
        return w

    # -- programs --------------------------------------------------------------------------------
    def _cache(self, which: str) -> KVCache:
        if which == MAIN:
            return self.kv
        if which == EMBED:
            if self._embed_kv is None:   # allocated on the first embedding
                self._embed_kv = self._new_cache()
            return self._embed_kv
        if self._reframed is None:   # HARP's scratch cache, allocated on first use
            self._reframed = self._new_cache()
        return self._reframed

    def _new_cache(self) -> KVCache:
        return KVCache(self.device, n_layers=self.cfg.num_hidden_layers, n_kv_heads=self.cfg.num_key_value_heads,
                       head_dim=self.cfg.head_dim, ctx=self.ctx, dtype=self.kv_type)

    def _logits_buffer(self, which: str):
        """One [1, vocab] logits buffer per cache, shared by its "last" programs (decode, prefill)."""
        if which not in self._last_logits:
            self._last_logits[which] = self.device.buffer((1, self.cfg.vocab_size), np.float32, "act",
                                                          name=f"logits[{which}]")
        return self._last_logits[which]

    def _program(self, n: int, head: str, readback: str, cache: str = MAIN, beta: float | None = None):
        """The program for n slots, a head and a cache, with its tail: readback "logits" downloads them,
        "sample" runs the sampling stage and downloads its words, "harp_*" first mixes the main logits
        into this (reframed) pass's logits with weight beta on the main ones."""
        key = (n, head, readback, cache, beta)
        if key not in self._programs:
            if (n, head, cache) not in self._recorded:
                logits = self._logits_buffer(cache) if head == "last" else None
                self._recorded[(n, head, cache)] = begin_program(self, n, head, dropout=cache == REFRAMED,
                                                                 kv=self._cache(cache), logits=logits,
                                                                 acts=self._acts.get((n, head, cache)))
                self._acts[(n, head, cache)] = self._recorded[(n, head, cache)][1]
            rec, acts = self._recorded[(n, head, cache)]
            rec = rec.fork()
            if readback.startswith("harp_"):
                ops.mix(rec, acts.logits, self._logits_buffer(MAIN), acts.logits, beta=beta)
            if readback in ("logits", "harp_logits"):
                rec.download(acts.logits)
            elif readback == "pooled":
                rec.download(acts.pooled)
            elif readback in ("sample", "harp_sample"):
                self._sample_work = ops.sample(rec, acts.sample_out, acts.logits, acts.sparams, acts.recent,
                                               vocab=self.cfg.vocab_size, work=self._sample_work)
                rec.download(acts.sample_out)
            self._programs[key] = (rec.finish(), acts)
        return self._programs[key]

    def _run(self, ids, head: str, readback: str, n_slots: int, sampler_words=None, recent=None, *,
             cache: str = MAIN, beta: float | None = None, dropout: tuple[int, float] | None = None):
        ids = np.asarray(ids, dtype=np.uint32).reshape(-1)   # callers checked them (_check_ids)
        kv = self._cache(cache)
        prog, acts = self._program(n_slots, head, readback, cache, beta)
        seed, p = dropout or (0, 0.0)
        write_step(acts.step, pos=kv.pos, n_tokens=ids.size, seed=seed, drop_on=int(dropout is not None), drop_p=p)
        if sampler_words is not None:
            acts.sparams.host_view()[:] = sampler_words
            if recent is not None:
                acts.recent.host_view()[:recent.size] = recent
        view = acts.ids.host_view()
        view[:ids.size] = ids
        prog.run()
        kv.append(ids)
        return acts

    def _check_ids(self, ids, fresh: bool = False):
        """Validate token ids, and that they fit the context (checked before anything runs)."""
        ids = np.asarray(ids).reshape(-1)
        held = 0 if fresh else self.kv.pos
        if held + ids.size > self.ctx:
            raise ContextFull(f"{held + ids.size} tokens do not fit the context of {self.ctx} "
                              f"({held} already held); shorten the input or load the model with a larger ctx")
        if ids.size and (ids.min() < 0 or ids.max() >= self.cfg.vocab_size):
            raise VkharpError(f"token ids must be in [0, {self.cfg.vocab_size}), got {ids.min()}..{ids.max()}")
        return ids

    def logits(self, token_ids) -> np.ndarray:
        """Logits [n, vocab] for every position of a fresh run over token_ids (resets the cache)."""
        ids = self._check_ids(token_ids, fresh=True)
        if ids.size == 0:
            raise VkharpError("logits() needs at least one token")
        self.kv.reset()
        rows = []
        for s in range(0, ids.size, self.chunk):
            part = ids[s:s + self.chunk]
            acts = self._run(part, "all", "logits", self.chunk)
            rows.append(acts.logits.host_view().reshape(self.chunk, -1)[:part.size].copy())
        return np.concatenate(rows)

    def _pieces(self, n: int):
        """(start, tokens, slots) of each prefill program run for n tokens: long chunks while more than
        half of one remains (from three short chunks on, one long chunk costs less: LONG_CHUNK), then
        chunks; a lone token goes through the N=1 program."""
        s = 0
        while s < n:
            r = n - s
            if self.long_chunk and r > self.long_chunk // 2:
                size, slots = min(r, self.long_chunk), self.long_chunk
            else:
                size = min(r, self.chunk)
                slots = 1 if size == 1 else self.chunk
            yield s, size, slots
            s += size

    def _feed(self, ids, readback: str, sampler_words=None, recent=None, *, cache: str = MAIN, **kw):
        """Run ids through a cache piece by piece (_pieces); pieces before the last run without the
        head, and only the last one reads anything back."""
        acts = None
        for s, size, n_slots in self._pieces(ids.size):
            part = ids[s:s + size]
            if s + size >= ids.size and readback != "none":
                acts = self._run(part, "last", readback, n_slots, sampler_words, recent, cache=cache, **kw)
            else:
                self._run(part, "none", "none", n_slots, cache=cache, **kw)
        return acts

    def prefill(self, token_ids, *, readback: str = "logits") -> np.ndarray | None:
        """Feed tokens after what the cache holds; returns the logits of the last one."""
        acts = self._feed(self._check_ids(token_ids), readback)
        if acts is None or readback != "logits":
            return None
        return acts.logits.host_view().reshape(-1).copy()

    def feed_and_sample(self, token_ids, sampler_words: np.ndarray, recent: np.ndarray | None = None) -> np.ndarray:
        """Feed tokens (a prompt chunk-wise, or one token) and run the GPU sampling stage on the logits
        of the last one; returns the stage's few output words (engine.sampling.unpack_result)."""
        ids = self._check_ids(token_ids)
        if ids.size == 0:
            raise VkharpError("feed_and_sample needs at least one token")
        self._sampled_from = MAIN
        return self._feed(ids, "sample", sampler_words, recent).sample_out.host_view().copy()

    # -- rollback: resample a position without recomputing it ------------------------------------
    def save_logits(self) -> None:
        """Keep, on the device, the logits the sampler last drew from (rollback may draw there again)."""
        if self._sampled_from in (None, SAVED):
            return
        key = ("save", self._sampled_from)
        if key not in self._programs:
            rec = self.device.recorder(name="save_logits")
            ops.scale(rec, self._logits_buffer(SAVED), self._logits_buffer(self._sampled_from), s=1.0)  # exact copy
            self._programs[key] = (rec.finish(), None)
        self._programs[key][0].run()
        self._sampled_from = SAVED

    def _sampler_io(self):
        """Sampler words, recent tokens and result buffers of the programs that sample a logits buffer
        left by another program (rollback's saved logits, HARP's mixed ones, the two-stream step)."""
        if self._sio is None:
            from .forward import RING
            from .sampling import OUT_WORDS, SP_WORDS
            dev = self.device
            self._sio = (dev.buffer((SP_WORDS,), np.uint32, "param", name="sampler_params[io]"),
                         dev.buffer((RING,), np.uint32, "param", name="recent_tokens[io]"),
                         dev.buffer((OUT_WORDS,), np.uint32, "act", name="sample_out[io]"))
        return self._sio

    def _record_sample(self, rec, which: str, out=None):
        sp, rc, own = self._sampler_io()
        out = out or own
        self._sample_work = ops.sample(rec, out, self._logits_buffer(which), sp, rc,
                                       vocab=self.cfg.vocab_size, work=self._sample_work)
        rec.download(out)

    def _run_sampler_io(self, prog, sampler_words, recent) -> np.ndarray:
        sp, rc, out = self._sampler_io()
        sp.host_view()[:] = sampler_words
        if recent is not None:
            rc.host_view()[:recent.size] = recent
        prog.run()
        return out.host_view().copy()

    def _sample_buffer(self, which: str, sampler_words, recent) -> np.ndarray:
        key = ("sample", which)
        if key not in self._programs:
            rec = self.device.recorder(name=f"sample[{which}]")
            self._record_sample(rec, which)
            self._programs[key] = (rec.finish(), None)
        words = self._run_sampler_io(self._programs[key][0], sampler_words, recent)
        self._sampled_from = which
        return words

    def sample_saved(self, sampler_words: np.ndarray, recent: np.ndarray | None = None) -> np.ndarray:
        """Run the sampling stage again on the saved logits (other banned ids, another draw)."""
        return self._sample_buffer(SAVED, sampler_words, recent)

    def embed(self, texts, pooling: str | None = None) -> np.ndarray:
        """L2-normalised sentence vectors [len(texts), hidden] (engine/embed/vectors.py); runs in its
        own KV cache, so the chat's cache and position are left as they are."""
        from .embed import embed_texts
        return embed_texts(self, texts, pooling)

    def decode_logits(self, token_id: int) -> np.ndarray:
        """One decode step (the N=1 program): feed one token, return the next-token logits."""
        self._check_ids([token_id])
        acts = self._run([token_id], "last", "logits", 1)
        return acts.logits.host_view().reshape(-1).copy()

    def generate(self, prompt, settings=None, **changes):
        """Stream the continuation of prompt (text or ids) as Steps: engine/generate.py."""
        from .generate import generate
        return generate(self, prompt, settings, **changes)

    def reuse_prefix(self, ids) -> int:
        """Keep the longest prefix of `ids` the cache already holds and forget the rest; returns its
        length, at most len(ids) - 1 (generation feeds at least one token, for its next-token logits).
        The chat's next turn and the server's next request feed only ids[n:]: a shared history (or
        system prompt) costs nothing again."""
        n = max(0, min(self.kv.common_prefix(ids), len(ids) - 1))
        self.truncate(n)
        return n

    def set_adapter(self, adapter) -> None:
        """Apply a LoRA adapter (engine/tune/lora.py) to every forward pass from now on, or none.
        Programs are recorded again over the same activation buffers (their pipelines are reused), and
        every cached position is forgotten: it was computed with the old weights. Training updates an
        attached adapter's buffers in place; callers then reset() the cache themselves."""
        if adapter is not None and adapter.model is not self:
            raise VkharpError("this adapter was made for another loaded model; load it with Adapter.load(model, path)")
        self.adapter = adapter
        self._programs.clear()
        self._recorded.clear()
        self.reset()

    def truncate(self, n: int) -> None:
        """Forget every position from n on (rollback, /undo, a new chat turn): a position move."""
        self.kv.truncate(n)

    def reset(self) -> None:
        self.kv.reset()
        self._reframed_key = None

    def close(self):
        self._programs.clear()
        self._recorded.clear()


def load(path: str | Path | None = None, device: Device | int | None = None, *, ctx: int | None = None,
         chunk: int = DEFAULT_CHUNK, progress: bool = False, kv_type: str | None = None,
         long_chunk: int | None = LONG_CHUNK) -> Model:
    """Load a converted model directory, a HF directory or a GGUF file (converted on first use)."""
    from engine.convert import default_model_path, ensure_converted, open_model_dir
    src = Path(path) if path is not None else default_model_path()
    if not src.exists():
        raise VkharpError(f"{src} does not exist")
    if (src / "manifest.json").exists():
        model_dir = src
        open_model_dir(model_dir, verify="once")    # damage shows before the device starts (stamped: cheap)
    else:
        model_dir = ensure_converted(src, progress=progress)
    if not isinstance(device, Device):
        device = Device(device)
    return Model(model_dir, device, ctx=ctx, chunk=chunk, progress=progress, kv_type=kv_type, long_chunk=long_chunk)
