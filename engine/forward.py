"""The forward pass as one recorded program per chunk size: embed → layers → final norm → head.

A program is recorded once for a fixed number of token slots N (decode: N=1; prefill: the chunk
size) and replayed for every chunk/token; what changes per replay (position, valid tokens, ids, the
dropout seed) is read from small host-visible buffers the host rewrites before each replay. Each
program owns its activation buffers, sized for its N, so decode never touches prefill-sized buffers.

Per layer (pre-norm transformer; `arch.sandwich_norms` adds Gemma's extra norms), one dispatch per
line (decode: 5 per layer):
    q,k,v = norm(x)·[Wq;Wk;Wv] (+b)  (one product into three outputs: the matrices are stacked at load;
                                     decode: the norm folded in; prefill: xn = norm(x) first)
    [q,k = per-head norm]
    [prefill: rope(q,k), with the KV append of k, v fused in]
    a = attention(q, k, v, cache)    (decode: rope of q and k and the KV append inside it)
    x += a·Wo (residual add in the epilogue)        [Gemma: o = a·Wo;  x += norm(o)]
    m = act(norm(x)·Wg)·(norm(x)·Wu)  (one product of [Wg;Wu], the activation in its epilogue)
    x += m·Wd (residual add in the epilogue)        [Gemma: d = m·Wd;  x += norm(d)]
and at the end logits = norm(x)·W_head, the norm folded in the same way. Where a checkpoint's q, k, v
(or gate, up) differ in format, they stay separate products (and the activation its own dispatch).
With an adapter (model.adapter, engine/tune/lora.py) each adapted product y = x·Wᵀ also gets
y += B·(A·x): the A products run beside the base product they share an input with, the B products
add into its outputs after it; [Wg; Wu] then splits into gate and up, and the activation is its own
dispatch (the adapter must add to both before it).
Gemma 2: the logits are soft-capped in place, so that logits() and the sampling stage both read them capped.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import ops
from .device import Buffer
from .ops.activation import geglu, swiglu
from .ops.attention import attention, kv_append
from .ops.elementwise import add, neg_abs, softcap
from .ops.embed import embed
from .ops.local1d import local1d, local1d_swiglu
from .ops.matmul import Norm, can_fold_norm, matmul, matvec
from .ops.pool import pool_sum
from .ops.rope import rope
from .ops.rows import select_row
from .params import STEP_WORDS
from .sampling import OUT_WORDS, SP_WORDS

RING = 64   # recent tokens kept on the device for the repetition penalty

# logits for every slot (model.logits), for the last valid token only, or none at all (prefill chunks
# before the last one: their logits would be thrown away); or no logits but a sentence vector
# (engine/embed/): the final-normed hidden state of the last valid row, or summed over the valid rows
# of every chunk of the pass (mean pooling; the host divides nothing: the vector is L2-normalised)
POOL_HEADS = ("pool_last", "pool_mean")
HEADS = ("all", "last", "none") + POOL_HEADS


@dataclass
class Acts:
    """Activation buffers of one program (N token slots)."""
    n: int
    step: Buffer
    ids: Buffer
    x: Buffer
    xn: Buffer
    q: Buffer
    k: Buffer
    v: Buffer
    attn: Buffer
    o: Buffer
    gate: Buffer
    up: Buffer
    mlp: Buffer
    down: Buffer
    logits: Buffer
    last: Buffer | None = None
    last_norm: Buffer | None = None  # the last row normalised, where the final norm cannot fold
    sparams: Buffer | None = None    # sampler words of this step (head "last")
    recent: Buffer | None = None     # ring of recent tokens (repetition penalty)
    sample_out: Buffer | None = None
    qn: Buffer | None = None
    kn: Buffer | None = None
    pooled: Buffer | None = None     # [1, hidden] sentence vector (heads "pool_*"), unnormalised
    extra: dict = field(default_factory=dict)


def make_acts(model, n: int, head: str, logits: Buffer | None = None) -> Acts:
    """Buffers for n slots; `logits` shares one [1, vocab] buffer between "last" programs (decode and
    the last prefill chunk write the same place, so what follows them, HARP's mix, reads one buffer)."""
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    cfg, dev = model.cfg, model.device
    h, hd, f = cfg.hidden_size, cfg.head_dim, cfg.intermediate_size
    gf = 1 if model.arch.mlp == "local1d" else f   # a Local1D MLP writes act(gate)·up at once (local1d_mlp)
    hq, hk = cfg.num_attention_heads, cfg.num_key_value_heads

    def buf(shape, name, dtype=np.float32, kind="act"):
        return dev.buffer(tuple(shape), dtype, kind, name=f"{name}[N={n}]")

    # What the host writes per replay lives in "param" buffers the shaders read directly (no copy).
    acts = Acts(
        n=n, step=buf((STEP_WORDS,), "step", np.uint32, "param"), ids=buf((n,), "ids", np.uint32, "param"),
        x=buf((n, h), "x"), xn=buf((n, h), "xn"),
        q=buf((n, hq, hd), "q"), k=buf((n, hk, hd), "k"), v=buf((n, hk, hd), "v"),
        attn=buf((n, hq, hd), "attn"), o=buf((n, h), "o"),
        gate=buf((n, gf), "gate"), up=buf((n, gf), "up"), mlp=buf((n, f), "mlp"), down=buf((n, h), "down"),
        logits=(logits if logits is not None and head == "last" else
                buf((n if head == "all" else 1, cfg.vocab_size if head in ("all", "last") else 1), "logits")),
    )
    if head == "last" and n > 1:
        acts.last = buf((1, h), "last")
        acts.last_norm = buf((1, h), "last_norm")
    if head == "last":
        acts.sparams = buf((SP_WORDS,), "sampler_params", np.uint32, "param")
        acts.recent = buf((RING,), "recent_tokens", np.uint32, "param")
        acts.sample_out = buf((OUT_WORDS,), "sample_out", np.uint32)
    if head in POOL_HEADS:
        acts.pooled = buf((1, h), "pooled")
        if head == "pool_last" and n > 1:
            acts.last = buf((1, h), "last")
    if model.arch.qk_norm:
        acts.qn, acts.kn = buf((n, hq, hd), "qn"), buf((n, hk, hd), "kn")
    return acts


def linear(rec, out, weight, x: Buffer, bias: Buffer | None = None, layer: int = 0,
           residual: bool = False, norm: Norm | None = None, glu: str | None = None):
    """x·Wᵀ (+b): the matrix-vector kernel for one row, the tiled matrix-matrix kernel for a chunk.
    residual=True adds the product into `out` (the residual stream) in the kernel's epilogue;
    norm: x is RMS-normalised in the kernel's prologue; out=(q, k, v) splits a stacked [Wq; Wk; Wv];
    glu=act: W is [Wg; Wu] and out = act(x·Wgᵀ)·(x·Wuᵀ) (engine/ops/matmul.py)."""
    rows = x.size // weight.cols
    if rows == 1:
        matvec(rec, out, weight, x, bias, layer=layer, residual=residual, norm=norm, glu=glu)
    else:
        matmul(rec, out, weight, x, bias, layer=layer, residual=residual, norm=norm, glu=glu)


def normed_linears(rec, products, x: Buffer, norm_weight: Buffer, eps: float, layer: int, scratch: Buffer,
                   glu: str | None = None) -> None:
    """out = rmsnorm(x)·Wᵀ (+b) for each (out, weight, bias) in `products`, independent of each other
    (glu: each product is a [Wg; Wu] GLU; see linear).
    For one or two rows (decode, HARP's two streams) the norm is folded into every product's
    prologue when all of them can take it: no norm dispatch, no barrier between the norm and the
    products. A prefill chunk runs it once into `scratch` instead: there every work group of a
    product would recompute the RMS of all its tokens (measured 1.8x slower prefill on lavapipe)."""
    rows = x.size // products[0][1].cols
    if rows <= 2 and all(can_fold_norm(w) for _, w, _ in products):
        norm = Norm(norm_weight, eps, layer)
        with rec.parallel():
            for out, w, b in products:
                linear(rec, out, w, x, b, layer=layer if w.layers > 1 else 0, norm=norm, glu=glu)
        return
    ops.rmsnorm(rec, scratch, x, norm_weight, eps=eps, layer=layer)
    with rec.parallel():
        for out, w, b in products:
            linear(rec, out, w, scratch, b, layer=layer if w.layers > 1 else 0, glu=glu)


def _lora_t(model, acts: Acts, target: str) -> Buffer:
    """The [N, r] buffer of A·x for one adapted target (kept with the activations, so that a program
    recorded again over the same activations reuses every pipeline); one per rank, since the next
    adapter may have another."""
    r = model.adapter.rank
    key = f"lora_t:{target}:r{r}"
    if key not in acts.extra:
        acts.extra[key] = model.device.buffer((acts.n, r), np.float32, "act", name=f"{key}[N={acts.n}]")
    return acts.extra[key]


def lora_inputs(model, acts: Acts, targets) -> list:
    """(t, A, None) products for the adapted ones among `targets` (they run beside the base products)."""
    ad = model.adapter
    if ad is None:
        return []
    return [(_lora_t(model, acts, t), ad.a[t], None) for t in targets if t in ad.a]


def lora_adds(rec, model, acts: Acts, outs, layer: int) -> None:
    """out += B·t for each (target, out) the adapter adapts: after the base product wrote `out`."""
    ad = model.adapter
    pairs = [(t, out) for t, out in outs if ad is not None and t in ad.b]
    if pairs:
        with rec.parallel():
            for t, out in pairs:
                linear(rec, out, ad.b[t], _lora_t(model, acts, t), layer=layer, residual=True)


def record_forward(model, rec, acts: Acts, *, head: str, dropout: bool = False, kv=None, second_kv=None) -> None:
    """Record the whole forward pass for `acts.n` token slots into `rec`, over the KV cache `kv`
    (the model's own by default; HARP's reframed passes use their own cache).

    second_kv: HARP's two streams in one pass (acts.n == 2, both slots one token at one position):
    slot 0 is the plain stream over `kv`, slot 1 the reframed one over `second_kv`. The weights are
    read once for both, which is what makes the cached mode cheap on bandwidth-bound devices."""
    cfg, arch, w, lw = model.cfg, model.arch, model.weights, model.layer_weights
    kv = kv or model.kv
    dual = second_kv is not None
    if dual and (acts.n != 2 or not dropout):
        raise ValueError("two streams need N = 2 slots and dropout=True")
    eps = cfg.rms_norm_eps
    embed(rec, acts.x, w["model.embed_tokens.weight"], acts.ids, acts.step,
          scale=arch.embed_scale(cfg), dropout=dropout, dual=dual)
    for i in range(cfg.num_hidden_layers):
        def norm(out, x, role):
            ops.rmsnorm(rec, out, x, lw[role], eps=eps, layer=i)
        # -- attention block --
        if "self_attn.qkv_proj.weight" in lw:   # [Wq; Wk; Wv] stacked at load: one dispatch, three outputs
            qkv = [((acts.q, acts.k, acts.v), lw["self_attn.qkv_proj.weight"], lw.get("self_attn.qkv_proj.bias"))]
        else:
            qkv = [(out, lw[f"self_attn.{name}_proj.weight"], lw.get(f"self_attn.{name}_proj.bias"))
                   for name, out in (("q", acts.q), ("k", acts.k), ("v", acts.v))]
        qkv_targets = [("self_attn.q_proj", acts.q), ("self_attn.k_proj", acts.k), ("self_attn.v_proj", acts.v)]
        normed_linears(rec, qkv + lora_inputs(model, acts, [t for t, _ in qkv_targets]), acts.x,
                       lw["input_layernorm.weight"], eps, i, acts.xn)
        lora_adds(rec, model, acts, qkv_targets, i)
        q, k = acts.q, acts.k
        if arch.qk_norm:
            with rec.parallel():
                norm(acts.qn, acts.q, "self_attn.q_norm.weight")
                norm(acts.kn, acts.k, "self_attn.k_norm.weight")
            q, k = acts.qn, acts.kn
        kc, vc, j = kv.layer(i)
        second = second_kv.layer(i)[:2] if dual else None
        # Decode (one token, or HARP's pair): RoPE and the KV append inside the attention dispatch.
        # Prefill: RoPE with the KV append fused in, the chunk's rotated keys and values to cache rows
        # P_POS..; attention then reads older rows from the cache, the chunk's own from the activations.
        # An f16 cache: rope, then kv_append rounds the chunk's rows into it (rope's append writes floats).
        fused = acts.n == 1 or dual
        if not fused and kv.dtype == "f16":
            rope(rec, q, k, model.inv_freq, acts.step, style="half", layer=i, dual=dual,
                 q_scale=arch.rope_q_scale(cfg, i))
            kv_append(rec, kc, vc, k, acts.v, acts.step, n_kv_heads=cfg.num_key_value_heads, head_dim=cfg.head_dim,
                      layer=j, second=second)
        elif not fused:
            rope(rec, q, k, model.inv_freq, acts.step, style="half", layer=i, dual=dual,
                 append=(acts.v, kc, vc), kv_layer=j, second=second, q_scale=arch.rope_q_scale(cfg, i))
        attention(rec, acts.attn, q, k, acts.v, kc, vc, acts.step,
                  n_heads=cfg.num_attention_heads, n_kv_heads=cfg.num_key_value_heads, head_dim=cfg.head_dim,
                  scale=arch.attn_scale(cfg), window=arch.layer_window(cfg, i), layer=j, second=second,
                  softcap=arch.attn_softcap(cfg),
                  rope=(model.inv_freq, i, arch.rope_q_scale(cfg, i)) if fused else None)
        o_lora = lora_inputs(model, acts, ["self_attn.o_proj"])
        if arch.sandwich_norms:   # x += norm(o): the norm needs the whole row of o first
            with rec.parallel():
                linear(rec, acts.o, lw["self_attn.o_proj.weight"], acts.attn, layer=i)
                for t, a, _ in o_lora:
                    linear(rec, t, a, acts.attn, layer=i)
            lora_adds(rec, model, acts, [("self_attn.o_proj", acts.o)], i)
            norm(acts.down, acts.o, "post_attention_layernorm.weight")
            add(rec, acts.x, acts.x, acts.down)
            mlp_norm = "pre_feedforward_layernorm.weight"
        else:                     # x += o, in the o projection's epilogue
            with rec.parallel():
                linear(rec, acts.x, lw["self_attn.o_proj.weight"], acts.attn, layer=i, residual=True)
                for t, a, _ in o_lora:
                    linear(rec, t, a, acts.attn, layer=i)
            lora_adds(rec, model, acts, [("self_attn.o_proj", acts.x)], i)
            mlp_norm = "post_attention_layernorm.weight"
        # -- MLP block --
        if arch.mlp == "local1d":               # Local1D layers, x += down in its epilogue: the layer is done
            local1d_mlp(model, rec, acts, i, lw[mlp_norm])
            continue
        gu_targets = [("mlp.gate_proj", acts.gate), ("mlp.up_proj", acts.up)]
        gu_lora = lora_inputs(model, acts, [t for t, _ in gu_targets])
        if "mlp.gate_up_proj.weight" in lw and not gu_lora:   # [Wg; Wu] stacked at load: act(gate)·up in the epilogue
            normed_linears(rec, [(acts.mlp, lw["mlp.gate_up_proj.weight"], None)], acts.x, lw[mlp_norm], eps, i,
                           acts.xn, glu=arch.activation)
        else:
            gu = ([((acts.gate, acts.up), lw["mlp.gate_up_proj.weight"], None)] if "mlp.gate_up_proj.weight" in lw
                  else [(acts.gate, lw["mlp.gate_proj.weight"], None), (acts.up, lw["mlp.up_proj.weight"], None)])
            normed_linears(rec, gu + gu_lora, acts.x, lw[mlp_norm], eps, i, acts.xn)
            lora_adds(rec, model, acts, gu_targets, i)
            (swiglu if arch.activation == "silu" else geglu)(rec, acts.mlp, acts.gate, acts.up)
        d_lora = lora_inputs(model, acts, ["mlp.down_proj"])
        d_out = acts.down if arch.sandwich_norms else acts.x
        with rec.parallel():      # sandwich: d = m·Wd, then x += norm(d); else x += m·Wd in the epilogue
            linear(rec, d_out, lw["mlp.down_proj.weight"], acts.mlp, layer=i, residual=not arch.sandwich_norms)
            for t, a, _ in d_lora:
                linear(rec, t, a, acts.mlp, layer=i)
        lora_adds(rec, model, acts, [("mlp.down_proj", d_out)], i)
        if arch.sandwich_norms:
            norm(acts.o, acts.down, "post_feedforward_layernorm.weight")
            add(rec, acts.x, acts.x, acts.o)
    if head == "none":
        return
    if head in POOL_HEADS:
        record_pooling(model, rec, acts, head)
        return
    lm_head = w.get("lm_head.weight") or w["model.embed_tokens.weight"]
    x = acts.x
    if head == "last" and acts.last is not None:   # the last valid row only: normalising it alone is the same
        select_row(rec, acts.last, acts.x, acts.step)
        x = acts.last
    # the final norm in the head's prologue (or its own dispatch where it cannot fold)
    normed_linears(rec, [(acts.logits, lm_head, None)], x, w["model.norm.weight"], eps, 0,
                   acts.xn if x is acts.x else acts.last_norm)
    if arch.final_softcap(cfg):
        softcap(rec, acts.logits, acts.logits, cap=arch.final_softcap(cfg))
    if arch.output_convention(cfg) == "target-only":   # outputs are distances: logits = -|y| (models/local1d.py)
        neg_abs(rec, acts.logits, acts.logits)


def local1d_mlp(model, rec, acts: Acts, layer: int, norm_weight: Buffer) -> None:
    """x += down(silu(gate(xn)) * up(xn)), xn = rmsnorm(x), with Local1D gate/up/down (models/local1d.py):
    the norm, gate and up with the activation in one pass over xn, and down adding into x (3 dispatches).
    The norm cannot fold into a Local1D prologue (each unit sees a window, the RMS needs the whole row)."""
    cfg, lw = model.cfg, model.layer_weights
    k_in, k_out = model.arch.kernels(cfg)
    ops.rmsnorm(rec, acts.xn, acts.x, norm_weight, eps=cfg.rms_norm_eps, layer=layer)
    (gate, j), (up, _) = (lw[f"mlp.{r}_local1d.weight"].part_for(layer) for r in ("gate", "up"))  # same layout
    local1d_swiglu(rec, acts.mlp, acts.xn, gate, up, kernel=k_in, units=cfg.intermediate_size, layer=j)
    down, j = lw["mlp.down_local1d.weight"].part_for(layer)
    local1d(rec, acts.x, acts.mlp, down, kernel=k_out, units=cfg.hidden_size, layer=j, residual=True)


def record_pooling(model, rec, acts: Acts, head: str) -> None:
    """The sentence-vector tail: final norm of the last valid row into acts.pooled ("pool_last"), or
    of every row, the valid ones summed into acts.pooled across the pass's chunks ("pool_mean")."""
    norm_w, eps = model.weights["model.norm.weight"], model.cfg.rms_norm_eps
    if head == "pool_last":
        x = acts.x
        if acts.last is not None:
            select_row(rec, acts.last, acts.x, acts.step)
            x = acts.last
        ops.rmsnorm(rec, acts.pooled, x, norm_w, eps=eps)
    else:
        ops.rmsnorm(rec, acts.xn, acts.x, norm_w, eps=eps)
        pool_sum(rec, acts.pooled, acts.xn, acts.step)


def begin_program(model, n: int, head: str, *, dropout: bool = False, kv=None, second_kv=None,
                  logits: Buffer | None = None, timestamps: bool = False, acts: Acts | None = None):
    """A recorder holding the forward pass for n slots (the caller adds its tail and finishes it).
    `acts`: record over existing activation buffers (a program recorded again after the adapter
    changed reuses every pipeline of the first recording)."""
    acts = acts if acts is not None else make_acts(model, n, head, logits)
    tag = ",two streams" if second_kv is not None else ",dropout" if dropout else ""
    rec = model.device.recorder(timestamps=timestamps, name=f"forward[N={n},{head}{tag}]")
    record_forward(model, rec, acts, head=head, dropout=dropout, kv=kv, second_kv=second_kv)
    return rec, acts
