"""A loaded model: weights on the device, the KV cache, and the recorded forward programs.

    model = engine.load(path, device=None, ctx=2048)
    model.logits(token_ids)        # full logits [n, vocab] of a fresh run (tests, perplexity)
    model.prefill(token_ids)       # feed tokens into the cache in chunks; logits of the last one
    model.decode_logits(token_id)  # one decode step through the N=1 program; its logits

Programs are recorded lazily, once, and replayed: prefill (N = chunk) and decode (N = 1), each with
its own activations; only the step words and token ids go up per replay, and only what the caller
asks for comes back.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .device import Device
from .errors import VkharpError
from .forward import begin_program
from .kv_cache import KVCache
from . import ops
from .params import write_step
from .tokenizer import Tokenizer
from .weights import upload_stacked

DEFAULT_CHUNK = 32


class ContextFull(VkharpError):
    """The KV cache has no room for the tokens asked for."""


class Model:
    def __init__(self, model_dir: str | Path, device: Device | None = None, *, ctx: int | None = None,
                 chunk: int = DEFAULT_CHUNK, progress: bool = False):
        from engine.convert.format import open_model_dir

        t0 = time.perf_counter()
        self.path = Path(model_dir)
        reader = open_model_dir(self.path)
        self.cfg, self.arch = reader.config, reader.architecture
        self.arch.validate(self.cfg)
        if self.cfg.final_logit_softcapping:
            raise VkharpError(f"{self.cfg.model_type}: final logit soft-capping is not supported yet")
        self.device = device or Device()
        self.tokenizer = Tokenizer(self.path)
        self.ctx = int(ctx or min(self.cfg.max_position_embeddings, 4096))
        if self.ctx < 1:
            raise VkharpError(f"ctx must be at least 1, got {ctx}")
        self.chunk = int(chunk)
        # Global tensors by HF name; per-layer tensors stacked by role ("self_attn.q_proj.weight"), so
        # that one pipeline serves every layer (see engine/weights.py).
        self.weights: dict = {}
        self.layer_weights: dict = {}
        self.weight_bytes = 0
        L = self.cfg.num_hidden_layers
        roles = list(self.arch.layer_tensor_shapes(self.cfg))
        globals_ = [n for n in self.arch.tensor_shapes(self.cfg) if not n.startswith("model.layers.")]
        items = [("global", n) for n in globals_] + [("layer", r) for r in roles]
        if progress:
            from tqdm import tqdm
            items = tqdm(items, desc="loading weights", unit="tensor", leave=False)
        for kind, name in items:
            if kind == "global":
                self.weights[name] = self._upload(name, lambda _, n=name: reader.load(n), 1)
            else:
                self.layer_weights[name] = self._upload(name, lambda i, r=name: reader.load(f"model.layers.{i}.{r}"), L)
        self.kv = KVCache(self.device, n_layers=L, n_kv_heads=self.cfg.num_key_value_heads,
                          head_dim=self.cfg.head_dim, ctx=self.ctx)
        # RoPE inverse frequencies, stacked [L, head_dim/2] (Gemma's local and global layers differ)
        freqs = np.stack([np.asarray(self.arch.layer_inv_freq(self.cfg, i), np.float32) for i in range(L)])
        self.inv_freq = self.device.upload(freqs, "inv_freq")
        self._programs: dict = {}
        self._recorded: dict = {}
        self._sample_work = None
        self.load_seconds = time.perf_counter() - t0

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
    def _program(self, n: int, head: str, readback: str):
        """The program for n slots and a head; readback "logits" adds a download of them at the end."""
        key = (n, head, readback)
        if key not in self._programs:
            if (n, head) not in self._recorded:
                self._recorded[(n, head)] = begin_program(self, n, head)
            rec, acts = self._recorded[(n, head)]
            rec = rec.fork()
            if readback == "logits":
                rec.download(acts.logits)
            elif readback == "sample":
                self._sample_work = ops.sample(rec, acts.sample_out, acts.logits, acts.sparams, acts.recent,
                                               vocab=self.cfg.vocab_size, work=self._sample_work)
                rec.download(acts.sample_out)
            self._programs[key] = (rec.finish(), acts)
        return self._programs[key]

    def _run(self, ids, head: str, readback: str, n_slots: int, sampler_words=None, recent=None):
        ids = np.asarray(ids, dtype=np.uint32).reshape(-1)   # callers checked them (_check_ids)
        prog, acts = self._program(n_slots, head, readback)
        write_step(acts.step, pos=self.kv.pos, n_tokens=ids.size)
        if sampler_words is not None:
            acts.sparams.host_view()[:] = sampler_words
            if recent is not None:
                acts.recent.host_view()[:recent.size] = recent
        view = acts.ids.host_view()
        view[:ids.size] = ids
        prog.run()
        self.kv.pos += ids.size
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

    def _feed(self, ids, readback: str, sampler_words=None, recent=None):
        """Run ids through the cache chunk by chunk (a lone token through the N=1 program); only the
        last chunk reads anything back. Returns the last chunk's activations."""
        acts = None
        for s in range(0, ids.size, self.chunk):
            part = ids[s:s + self.chunk]
            last = s + self.chunk >= ids.size
            acts = self._run(part, "last", readback if last else "none", 1 if part.size == 1 else self.chunk,
                             sampler_words, recent)
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
        return self._feed(ids, "sample", sampler_words, recent).sample_out.host_view().copy()

    def decode_logits(self, token_id: int) -> np.ndarray:
        """One decode step (the N=1 program): feed one token, return the next-token logits."""
        self._check_ids([token_id])
        acts = self._run([token_id], "last", "logits", 1)
        return acts.logits.host_view().reshape(-1).copy()

    def close(self):
        self._programs.clear()
        self._recorded.clear()


def load(path: str | Path | None = None, device: Device | int | None = None, *, ctx: int | None = None,
         chunk: int = DEFAULT_CHUNK, progress: bool = False) -> Model:
    """Load a converted model directory, a HF directory or a GGUF file (converted on first use)."""
    from engine.convert import default_model_path, ensure_converted
    src = Path(path) if path is not None else default_model_path()
    if not src.exists():
        raise VkharpError(f"{src} does not exist")
    model_dir = src if (src / "manifest.json").exists() else ensure_converted(src, progress=progress)
    if not isinstance(device, Device):
        device = Device(device)
    return Model(model_dir, device, ctx=ctx, chunk=chunk, progress=progress)
