"""The training step as recorded programs: forward over one sequence, loss, backward into the adapter.

One example is a token sequence (prompt + answer) of at most T slots and the rows that predict its
answer tokens (at most A). Three programs, recorded once per (T, A) bucket and replayed every step:

- `forward`: embed → every block (its input saved in a layer-stacked buffer) → the answer rows
  gathered → final norm → head → the loss rule (engine/ops/loss.py) → its few words of stats read back.
  The host stops here when the rule says nothing is left to fix (greedy reproduces the answer).
- `backward`: the head's and the loss's backward, then for each block from the last: its
  activations copied back from where the forward kept them (layer-stacked buffers, one pipeline for
  every layer), or, where they would not fit (KEEP_BYTES, the buffer limit), its forward recomputed
  from the saved input; then its backward, which sums into the adapter's gradients and leaves the
  gradient of the block's input for the block below. The partial sums of the squared
  gradients come back (the host computes the global norm and the clip).
- `update`: one AdamW step over every adapter matrix (engine/ops/adamw.py), its hyperparameters read
  from a host-written buffer, the skipped-element counts read back.

Given engine/tune/scratch.py's FullWeights in the adapter's place (`full`), the backward also writes
every weight's gradient: dyᵀ·x beside each transposed product, the norms' dweight, the head's, the
embedding's (embed_back) and the Local1D layers' (local1d_back_w).

Each block is computed as transformers writes it, unfused and without a KV cache: causal attention
over the whole sequence (ops.attention_seq saves each row's log-sum-exp for its backward). The base
weights are only ever read: every gradient of a frozen matrix is a transposed product (ops.matmul_t).
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..device import Buffer
from ..errors import VkharpError
from ..ops.activation import geglu, swiglu
from ..ops.copy_rows import copy_block, gather_rows, scatter_rows
from ..ops.embed import embed
from ..ops.embed_back import embed_back
from ..ops.local1d import local1d, local1d_back_w, local1d_back_x
from ..ops.matmul import matmul
from ..ops.rope import rope
from ..params import STEP_WORDS
from ..reference.loss import EDIT_NONE, STAT_WORDS, LossStats, unpack_stats


KEEP_BYTES = 1 << 30   # the most device memory the kept activations may take (else: recompute per block)


class TrainProgram:
    """The three programs of one (T, A) bucket for a model and its adapter (see the module doc)."""

    def __init__(self, model, adapter, T: int, A: int, grads: dict, *, rule: str, margin: float,
                 hold: float = 0.0, timestamps: bool = False):
        self.hold = hold               # logits the target must lead by to count as reproduced (engine/ops/loss.py)
        self.timestamps = timestamps   # Vulkan timestamps per step (tools/bench_tune.py)
        self.model, self.ad, self.T, self.A, self.rule, self.margin = model, adapter, T, A, rule, margin
        cfg, dev = model.cfg, model.device
        H, hd, F = cfg.hidden_size, cfg.head_dim, cfg.intermediate_size
        hq, hk, L, V, r = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.num_hidden_layers, cfg.vocab_size, adapter.rank
        self.L = L
        self.full = getattr(adapter, "full", False)   # every weight's gradient too (engine/tune/scratch.py)

        def buf(shape, name, dtype=np.float32, kind="act"):
            return dev.buffer(tuple(shape), dtype, kind, name=f"tune.{name}[T={T}]")

        # host-written inputs
        self.step = buf((STEP_WORDS,), "step", np.uint32, "param")
        self.ids = buf((T,), "ids", np.uint32, "param")
        self.idx = buf((A,), "answer_rows", np.uint32, "param")
        # activations of one block (recomputed per block in the backward)
        self.saved = buf((L + 1, T, H), "block_inputs")
        self.x, self.xmid, self.xn1, self.xn2 = buf((T, H), "x"), buf((T, H), "x_mid"), buf((T, H), "xn1"), buf((T, H), "xn2")
        self.q, self.k, self.v = buf((T, hq, hd), "q"), buf((T, hk, hd), "k"), buf((T, hk, hd), "v")
        self.qn, self.kn = (buf((T, hq, hd), "qn"), buf((T, hk, hd), "kn")) if model.arch.qk_norm else (None, None)
        self.attn, self.lse = buf((T, hq, hd), "attn"), buf((T, hq), "lse")
        self.o, self.o_normed = buf((T, H), "o"), buf((T, H), "o_normed")
        self.gate, self.up, self.mlp = buf((T, F), "gate"), buf((T, F), "up"), buf((T, F), "mlp")
        self.down, self.down_normed = buf((T, H), "down"), buf((T, H), "down_normed")
        self.t = {tg: buf((T, r), f"t[{tg}]") for tg in adapter.targets}       # A·x of each target
        # gradients of one block
        self.dx, self.dh = buf((T, H), "dx"), buf((T, H), "dh")
        self.dxn = buf((T, H), "dxn")
        self.dq, self.dk, self.dv = buf((T, hq, hd), "dq"), buf((T, hk, hd), "dk"), buf((T, hk, hd), "dv")
        self.dqp, self.dkp = (buf((T, hq, hd), "dq_pre"), buf((T, hk, hd), "dk_pre")) if model.arch.qk_norm else (None, None)
        self.dattn = buf((T, hq, hd), "dattn")
        self.dmlp, self.dgate, self.dup = buf((T, F), "dmlp"), buf((T, F), "dgate"), buf((T, F), "dup")
        self.dt = {tg: buf((T, r), f"dt[{tg}]") for tg in adapter.targets}
        # head
        self.xa, self.xan = buf((A, H), "x_answer"), buf((A, H), "xn_answer")
        self.dxa, self.dxan = buf((A, H), "dx_answer"), buf((A, H), "dxn_answer")
        self.logits, self.dlogits = buf((A, V), "logits"), buf((A, V), "dlogits")
        # the loss rule's inputs (host-written per example) and outputs
        self.targets = buf((A,), "targets", np.uint32, "param")
        self.weights = buf((A,), "weights", np.float32, "param")
        edit = rule == "position-edit"
        self.edits = buf((A,), "edits", np.uint32, "param") if edit else None
        self.base = buf((A, V), "base_logits") if edit else None
        self.stats = buf((STAT_WORDS + A,), "loss_stats", np.uint32)
        # the adapter's gradients (shared by every bucket: the optimizer reads them)
        self.grads = grads
        self.sumsq = None
        self.kept = self._kept_buffers(buf)
        self.forward = self._record_forward()
        self.backward = self._record_backward()

    def _block_acts(self) -> dict:
        """The activations of one block its backward reads (beside its input, always kept)."""
        a, arch = self, self.model.arch
        out = {"xn1": a.xn1, "q": a.q, "k": a.k, "v": a.v, "attn": a.attn, "lse": a.lse, "xmid": a.xmid,
               "xn2": a.xn2, "gate": a.gate, "up": a.up, "mlp": a.mlp}
        if arch.qk_norm:
            out.update(qn=a.qn, kn=a.kn)
        if arch.sandwich_norms:
            out.update(o=a.o, down=a.down)
        out.update({f"t[{tg}]": b for tg, b in a.t.items()})
        return out

    def _kept_buffers(self, buf) -> dict | None:
        """Every block's activations, kept by the forward in layer-stacked buffers so that the
        backward copies them back instead of recomputing the block (a copy costs ~1/50 of the block
        on lavapipe); None where one of them would not fit a storage buffer or all together would
        pass KEEP_BYTES: then the backward recomputes each block from its saved input."""
        acts = self._block_acts()
        limit = self.model.device.max_buffer_bytes
        sizes = {n: b.size * 4 * self.L for n, b in acts.items()}
        if max(sizes.values()) > limit or sum(sizes.values()) > KEEP_BYTES:
            return None
        return {n: buf((self.L, b.size), f"kept[{n}]") for n, b in acts.items()}

    # -- one block's forward ----------------------------------------------------------------------
    def _lin(self, rec, out, role: str, x: Buffer, i: int, *, residual=False):
        lw = self.model.layer_weights
        w, b = lw[f"{role}.weight"], lw.get(f"{role}.bias")
        matmul(rec, out, w, x, None if residual else b, layer=i, residual=residual)

    def _lora_fwd(self, rec, pairs, x: Buffer, i: int):
        """out += B·(A·x) for each adapted (target, out); t = A·x is kept for the backward."""
        pairs = [(tg, out) for tg, out in pairs if tg in self.ad.a]
        if not pairs:
            return
        with rec.parallel():
            for tg, _ in pairs:
                matmul(rec, self.t[tg], self.ad.a[tg], x, layer=i)
        with rec.parallel():
            for tg, out in pairs:
                matmul(rec, out, self.ad.b[tg], self.t[tg], layer=i, residual=True)

    def _block_forward(self, rec, i: int, *, to_next: bool):
        """Block i from self.x (its input, kept); to_next: its output into self.x (the forward
        program), else stop after the MLP's last product (the backward needs nothing later)."""
        m, cfg, arch, lw = self.model, self.model.cfg, self.model.arch, self.model.layer_weights
        eps, T = cfg.rms_norm_eps, self.T
        ops.rmsnorm(rec, self.xn1, self.x, lw["input_layernorm.weight"], eps=eps, layer=i)
        if "self_attn.qkv_proj.weight" in lw:
            matmul(rec, (self.q, self.k, self.v), lw["self_attn.qkv_proj.weight"], self.xn1,
                   lw.get("self_attn.qkv_proj.bias"), layer=i)
        else:
            with rec.parallel():
                for name, out in (("q", self.q), ("k", self.k), ("v", self.v)):
                    self._lin(rec, out, f"self_attn.{name}_proj", self.xn1, i)
        self._lora_fwd(rec, [("self_attn.q_proj", self.q), ("self_attn.k_proj", self.k),
                             ("self_attn.v_proj", self.v)], self.xn1, i)
        q, k = self.q, self.k
        if arch.qk_norm:
            with rec.parallel():
                ops.rmsnorm(rec, self.qn, self.q, lw["self_attn.q_norm.weight"], eps=eps, layer=i)
                ops.rmsnorm(rec, self.kn, self.k, lw["self_attn.k_norm.weight"], eps=eps, layer=i)
            q, k = self.qn, self.kn
        rope(rec, q, k, m.inv_freq, self.step, style="half", layer=i, q_scale=arch.rope_q_scale(cfg, i))
        ops.attention_seq(rec, self.attn, self.lse, q, k, self.v, n_heads=cfg.num_attention_heads,
                          n_kv_heads=cfg.num_key_value_heads, head_dim=cfg.head_dim, scale=arch.attn_scale(cfg),
                          window=arch.layer_window(cfg, i), softcap=arch.attn_softcap(cfg))
        copy_block(rec, self.xmid, self.x, T * cfg.hidden_size)
        if arch.sandwich_norms:   # x_mid = x + norm(o)
            self._lin(rec, self.o, "self_attn.o_proj", self.attn, i)
            self._lora_fwd(rec, [("self_attn.o_proj", self.o)], self.attn, i)
            ops.rmsnorm(rec, self.o_normed, self.o, lw["post_attention_layernorm.weight"], eps=eps, layer=i)
            ops.add(rec, self.xmid, self.xmid, self.o_normed)
            mlp_norm = "pre_feedforward_layernorm.weight"
        else:                     # x_mid = x + o
            self._lin(rec, self.xmid, "self_attn.o_proj", self.attn, i, residual=True)
            self._lora_fwd(rec, [("self_attn.o_proj", self.xmid)], self.attn, i)
            mlp_norm = "post_attention_layernorm.weight"
        ops.rmsnorm(rec, self.xn2, self.xmid, lw[mlp_norm], eps=eps, layer=i)
        if arch.mlp == "local1d":
            self._local1d_forward(rec, i, to_next=to_next)
            return
        if "mlp.gate_up_proj.weight" in lw:
            matmul(rec, (self.gate, self.up), lw["mlp.gate_up_proj.weight"], self.xn2, layer=i)
        else:
            with rec.parallel():
                self._lin(rec, self.gate, "mlp.gate_proj", self.xn2, i)
                self._lin(rec, self.up, "mlp.up_proj", self.xn2, i)
        self._lora_fwd(rec, [("mlp.gate_proj", self.gate), ("mlp.up_proj", self.up)], self.xn2, i)
        (swiglu if arch.activation == "silu" else geglu)(rec, self.mlp, self.gate, self.up)
        if not to_next:           # the backward needs down before its norm (sandwich) and A·mlp
            if arch.sandwich_norms:
                self._lin(rec, self.down, "mlp.down_proj", self.mlp, i)
                self._lora_fwd(rec, [("mlp.down_proj", self.down)], self.mlp, i)
            elif "mlp.down_proj" in self.ad.a:
                matmul(rec, self.t["mlp.down_proj"], self.ad.a["mlp.down_proj"], self.mlp, layer=i)
            return
        copy_block(rec, self.x, self.xmid, T * cfg.hidden_size)
        if arch.sandwich_norms:   # x = x_mid + norm(down)
            self._lin(rec, self.down, "mlp.down_proj", self.mlp, i)
            self._lora_fwd(rec, [("mlp.down_proj", self.down)], self.mlp, i)
            ops.rmsnorm(rec, self.down_normed, self.down, lw["post_feedforward_layernorm.weight"], eps=eps, layer=i)
            ops.add(rec, self.x, self.x, self.down_normed)
        else:
            self._lin(rec, self.x, "mlp.down_proj", self.mlp, i, residual=True)
            self._lora_fwd(rec, [("mlp.down_proj", self.x)], self.mlp, i)

    def _local1d(self, role: str, i: int):
        """(layer i's buffer of a Local1D weight, its index there, K, units) (models/local1d.py)."""
        cfg, lw = self.model.cfg, self.model.layer_weights
        k_in, k_out = self.model.arch.kernels(cfg)
        buf, j = lw[f"mlp.{role}_local1d.weight"].part_for(i)
        return buf, j, *((k_out, cfg.hidden_size) if role == "down" else (k_in, cfg.intermediate_size))

    def _local1d_forward(self, rec, i: int, *, to_next: bool):
        """The Local1D MLP unfused (gate and up kept for the backward): x = x_mid + down(silu(gate)·up)."""
        with rec.parallel():
            for role, out in (("gate", self.gate), ("up", self.up)):
                w, j, k, units = self._local1d(role, i)
                local1d(rec, out, self.xn2, w, kernel=k, units=units, layer=j)
        swiglu(rec, self.mlp, self.gate, self.up)
        if to_next:
            copy_block(rec, self.x, self.xmid, self.T * self.model.cfg.hidden_size)
            w, j, k, units = self._local1d("down", i)
            local1d(rec, self.x, self.mlp, w, kernel=k, units=units, layer=j, residual=True)

    def _local1d_back(self, rec, i: int):
        """self.dx (the block output's gradient) through the Local1D MLP into self.dxn; with `full`, the
        Local1D weights' gradients (stacked by layer, as the weights)."""
        w, j, k, units = self._local1d("down", i)
        if self.full:
            local1d_back_w(rec, self._wgrad("mlp.down_local1d.weight"), self.dx, self.mlp, kernel=k, units=units,
                           layer=i, accumulate=True)
        local1d_back_x(rec, self.dmlp, self.dx, w, kernel=k, units=units, layer=j)
        ops.glu_back(rec, self.dgate, self.dup, self.gate, self.up, self.dmlp, act="silu")
        for n, (role, dy) in enumerate((("gate", self.dgate), ("up", self.dup))):
            w, j, k, units = self._local1d(role, i)
            if self.full:
                local1d_back_w(rec, self._wgrad(f"mlp.{role}_local1d.weight"), dy, self.xn2, kernel=k, units=units,
                               layer=i, accumulate=True)
            local1d_back_x(rec, self.dxn, dy, w, kernel=k, units=units, layer=j, accumulate=n > 0)

    def _wgrad(self, name: str) -> Buffer:
        if name not in self.grads:
            raise VkharpError(f"no gradient buffer for {name!r} (the trainer's parameters and the model disagree)")
        return self.grads[name]

    def _record_forward(self):
        m, cfg, T, H = self.model, self.model.cfg, self.T, self.model.cfg.hidden_size
        rec = m.device.recorder(name=f"tune.forward[T={T},A={self.A}]", timestamps=self.timestamps)
        embed(rec, self.x, m.weights["model.embed_tokens.weight"], self.ids, self.step, scale=m.arch.embed_scale(cfg))
        for i in range(self.L):
            copy_block(rec, self.saved, self.x, T * H, dst=i * T * H)
            self._block_forward(rec, i, to_next=True)
            if self.kept is not None:
                with rec.parallel():
                    for n, b in self._block_acts().items():
                        copy_block(rec, self.kept[n], b, b.size, dst=i * b.size)
        copy_block(rec, self.saved, self.x, T * H, dst=self.L * T * H)
        gather_rows(rec, self.xa, self.x, self.idx)
        ops.rmsnorm(rec, self.xan, self.xa, m.weights["model.norm.weight"], eps=cfg.rms_norm_eps)
        matmul(rec, self.logits, self.head, self.xan)
        if m.arch.final_softcap(cfg):
            ops.softcap(rec, self.logits, self.logits, cap=m.arch.final_softcap(cfg))
        ops.loss(rec, self.dlogits, self.stats, self.logits, self.targets, self.weights, rule=self.rule,
                 base=self.base, edits=self.edits, margin=self.margin, hold=self.hold)
        rec.download(self.stats)
        return rec.finish()

    @property
    def head(self):
        w = self.model.weights
        return w.get("lm_head.weight") or w["model.embed_tokens.weight"]

    # -- backward ---------------------------------------------------------------------------------
    def _grad(self, rec, name: str, dy: Buffer, x: Buffer, i: int):
        """grad[name][layer i] += dyᵀ·x, into the layer's slice of the stacked gradient (the examples of
        one optimizer step sum their gradients; the trainer zeroes them per step)."""
        rows = dict(self.ad.params())[name].rows
        ops.grad_weight(rec, self.grads[name], dy, x, accumulate=True, layer=i, rows=rows)

    def _lora_back(self, rec, pairs, x: Buffer, dx: Buffer, i: int):
        """For each adapted (target, dy): the gradients of B (dyᵀ·t) and A (dtᵀ·x, dt = dy·B), and
        dx += dt·A (dx already holds the base product's part)."""
        pairs = [(tg, dy) for tg, dy in pairs if tg in self.ad.a]
        for tg, dy in pairs:
            self._grad(rec, f"{tg}.lora_B", dy, self.t[tg], i)
            ops.matmul_t(rec, self.dt[tg], self.ad.b[tg], dy, layer=i)
            self._grad(rec, f"{tg}.lora_A", self.dt[tg], x, i)
            ops.matmul_t(rec, dx, self.ad.a[tg], self.dt[tg], layer=i, accumulate=True)

    def _frozen_back(self, rec, dx: Buffer, parts, i: int, x: Buffer | None = None):
        """dx = Σ dy·W over (role, dy) of frozen matrices sharing the input; stacked q/k/v and
        gate/up are read by row range. With `full` (no fused matrices then), each W's gradient
        dyᵀ·x is added too (x: the products' shared input)."""
        lw = self.model.layer_weights
        for n, (role, dy, stacked, rows) in enumerate(parts):
            fused = stacked != role and f"{stacked}.weight" in lw
            w = lw[f"{stacked if fused else role}.weight"]
            ops.matmul_t(rec, dx, w, dy, layer=i, rows=rows if fused else None, accumulate=n > 0)
            if self.full:
                ops.grad_weight(rec, self._wgrad(f"{role}.weight"), dy, x, accumulate=True, layer=i, rows=w.rows)

    def _block_backward(self, rec, i: int):
        """self.dx: the gradient of block i's output → of its input (self.x is the recomputed input)."""
        m, cfg, arch, lw = self.model, self.model.cfg, self.model.arch, self.model.layer_weights
        eps = cfg.rms_norm_eps
        F = cfg.intermediate_size
        # -- MLP: x_out = x_mid + down (or + norm(down))
        mlp_norm = "pre_feedforward_layernorm.weight" if arch.sandwich_norms else "post_attention_layernorm.weight"
        if arch.mlp == "local1d":
            self._local1d_back(rec, i)
            ops.rmsnorm_back(rec, self.dx, self.xmid, lw[mlp_norm], self.dxn, eps=eps, layer=i, accumulate=True,
                             **self._dnorm(mlp_norm, i))
            return self._attention_back(rec, i)
        d_down = self.dx
        if arch.sandwich_norms:
            ops.rmsnorm_back(rec, self.dh, self.down, lw["post_feedforward_layernorm.weight"], self.dx, eps=eps, layer=i)
            d_down = self.dh
        self._frozen_back(rec, self.dmlp, [("mlp.down_proj", d_down, "mlp.down_proj", None)], i, self.mlp)
        self._lora_back(rec, [("mlp.down_proj", d_down)], self.mlp, self.dmlp, i)
        ops.glu_back(rec, self.dgate, self.dup, self.gate, self.up, self.dmlp, act=arch.activation)
        self._frozen_back(rec, self.dxn, [("mlp.gate_proj", self.dgate, "mlp.gate_up_proj", (0, F)),
                                          ("mlp.up_proj", self.dup, "mlp.gate_up_proj", (F, F))], i, self.xn2)
        self._lora_back(rec, [("mlp.gate_proj", self.dgate), ("mlp.up_proj", self.dup)], self.xn2, self.dxn, i)
        ops.rmsnorm_back(rec, self.dx, self.xmid, lw[mlp_norm], self.dxn, eps=eps, layer=i, accumulate=True,
                         **self._dnorm(mlp_norm, i))
        self._attention_back(rec, i)

    def _dnorm(self, name: str, i: int) -> dict:
        """rmsnorm_back's arguments for the norm weight's gradient (with `full`)."""
        return dict(dweight=self._wgrad(name), dweight_accumulate=True) if self.full else {}

    def _attention_back(self, rec, i: int):
        """self.dx (the gradient of x_mid) through the attention half of block i, into the block input's."""
        m, cfg, arch, lw = self.model, self.model.cfg, self.model.arch, self.model.layer_weights
        eps = cfg.rms_norm_eps
        hq, hk, hd = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        # -- attention: x_mid = x + o (or + norm(o))
        d_o = self.dx
        if arch.sandwich_norms:
            ops.rmsnorm_back(rec, self.dh, self.o, lw["post_attention_layernorm.weight"], self.dx, eps=eps, layer=i)
            d_o = self.dh
        self._frozen_back(rec, self.dattn, [("self_attn.o_proj", d_o, "self_attn.o_proj", None)], i, self.attn)
        self._lora_back(rec, [("self_attn.o_proj", d_o)], self.attn, self.dattn, i)
        q, k = (self.qn, self.kn) if arch.qk_norm else (self.q, self.k)
        ops.attention_back(rec, self.dq, self.dk, self.dv, q, k, self.v, self.attn, self.lse, self.dattn,
                           n_heads=hq, n_kv_heads=hk, head_dim=hd, scale=arch.attn_scale(cfg),
                           window=arch.layer_window(cfg, i), softcap=arch.attn_softcap(cfg))
        ops.rope_back(rec, self.dq, self.dk, m.inv_freq, self.step, style="half", layer=i,
                      q_scale=arch.rope_q_scale(cfg, i))
        dq, dk = self.dq, self.dk
        if arch.qk_norm:
            ops.rmsnorm_back(rec, self.dqp, self.q, lw["self_attn.q_norm.weight"], self.dq, eps=eps, layer=i)
            ops.rmsnorm_back(rec, self.dkp, self.k, lw["self_attn.k_norm.weight"], self.dk, eps=eps, layer=i)
            dq, dk = self.dqp, self.dkp
        qr, kr = hq * hd, hk * hd
        self._frozen_back(rec, self.dxn, [("self_attn.q_proj", dq, "self_attn.qkv_proj", (0, qr)),
                                          ("self_attn.k_proj", dk, "self_attn.qkv_proj", (qr, kr)),
                                          ("self_attn.v_proj", self.dv, "self_attn.qkv_proj", (qr + kr, kr))], i,
                          self.xn1)
        self._lora_back(rec, [("self_attn.q_proj", dq), ("self_attn.k_proj", dk), ("self_attn.v_proj", self.dv)],
                        self.xn1, self.dxn, i)
        ops.rmsnorm_back(rec, self.dx, self.x, lw["input_layernorm.weight"], self.dxn, eps=eps, layer=i,
                         accumulate=True, **self._dnorm("input_layernorm.weight", i))

    def _record_backward(self):
        m, cfg, T, H = self.model, self.model.cfg, self.T, self.model.cfg.hidden_size
        rec = m.device.recorder(name=f"tune.backward[T={T},A={self.A}]", timestamps=self.timestamps)
        if m.arch.final_softcap(cfg):
            ops.softcap_back(rec, self.dlogits, self.logits, self.dlogits, cap=m.arch.final_softcap(cfg))
        ops.matmul_t(rec, self.dxan, self.head, self.dlogits)
        if self.full:   # the head's gradient (the tied embedding's first part; embed_back adds the rest)
            head = "lm_head.weight" if "lm_head.weight" in m.weights else "model.embed_tokens.weight"
            ops.grad_weight(rec, self._wgrad(head), self.dlogits, self.xan, accumulate=True)
        ops.rmsnorm_back(rec, self.dxa, self.xa, m.weights["model.norm.weight"], self.dxan, eps=cfg.rms_norm_eps,
                         **self._dnorm("model.norm.weight", 0))
        ops.fill_u32(rec, self.dx, value=0)   # 0.0f
        scatter_rows(rec, self.dx, self.dxa, self.idx)
        for i in reversed(range(self.L)):
            with rec.parallel():
                copy_block(rec, self.x, self.saved, T * H, src=i * T * H)
                if self.kept is not None:
                    for n, b in self._block_acts().items():
                        copy_block(rec, b, self.kept[n], b.size, src=i * b.size)
            if self.kept is None:
                self._block_forward(rec, i, to_next=False)
            self._block_backward(rec, i)
        if self.full:
            embed_back(rec, self._wgrad("model.embed_tokens.weight"), self.ids, self.dx,
                       scale=m.arch.embed_scale(cfg), accumulate=True)
        sizes = [ops.sum_squares_groups(m.device, g.size) for g in self.grads.values()]
        self.sumsq = m.device.buffer((sum(sizes),), np.float32, "act", name=f"tune.sumsq[T={T}]")
        with rec.parallel():
            for off, g in zip(np.cumsum([0] + sizes[:-1]), self.grads.values()):
                ops.sum_squares(rec, self.sumsq, g, offset=int(off))
        rec.download(self.sumsq)
        return rec.finish()

    # -- host side --------------------------------------------------------------------------------
    def write_example(self, ids: np.ndarray, rows: np.ndarray, targets: np.ndarray, weights: np.ndarray,
                      edits: np.ndarray | None = None) -> None:
        """Token ids (≤ T), the rows predicting answer tokens (≤ A, distinct, < len(ids)), the tokens
        they should predict and their loss weights (and position-edit's wrong tokens)."""
        from ..params import write_step
        if len(ids) > self.T or len(rows) > self.A:
            raise VkharpError(f"an example of {len(ids)} tokens and {len(rows)} answer rows does not fit the "
                              f"T={self.T}, A={self.A} program")
        full = np.zeros(self.T, np.uint32)
        full[:len(ids)] = ids
        self.ids.host_view()[:] = full
        idx = np.full(self.A, self.T, np.uint32)     # past the rows: skipped by gather and scatter
        idx[:len(rows)] = rows
        self.idx.host_view()[:] = idx
        write_step(self.step, pos=0, n_tokens=len(ids))
        for buf, vals, fill, dtype in ((self.targets, targets, 0, np.uint32), (self.weights, weights, 0.0, np.float32),
                                       (self.edits, edits, EDIT_NONE, np.uint32)):
            if buf is not None:
                full = np.full(self.A, fill, dtype)
                if vals is not None:
                    full[:len(vals)] = vals
                buf.host_view()[:] = full

    def read_stats(self) -> LossStats:
        return unpack_stats(self.stats.host_view().copy(), self.A)

    def grad_sumsq(self) -> float:
        return float(np.sum(self.sumsq.host_view().astype(np.float64)))

