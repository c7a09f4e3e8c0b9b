"""Launchers for shaders/kv_append.comp and shaders/attention.comp (causal GQA over the KV cache).

KV cache layout (shared with engine/kv_cache.py): K and V buffers of layers stacked, each layer
[n_kv_heads, ctx, head_dim] (f32, or f16 pairs), head-major, so that the keys one kv head's work
groups walk are contiguous (the prefetchers stream them; 30 layers of decode attention at 2,000
positions on lavapipe: 14.8 ms against 19.4 position-major in one run, 17.1 head-major in another).
Truncation is only a smaller P_POS next time. Each
buffer must fit `device.max_buffer_bytes`.

Order inside one recorded layer (engine/forward.py): prefill, rope with the KV append fused in, then
attention, which reads the cache (positions < P_POS) and the chunk's own keys/values from the k/v
activations; decode (one token, or HARP's pair), one dispatch: attention with `rope=` rotates q and
its own key itself and appends the key and value. The recorder puts a barrier between every access
of a layer-stacked cache buffer and the next write of it (it tracks whole buffers, as the validation
layer does).
"""
from __future__ import annotations

import numpy as np

from ..device import Buffer, Device, Recorder, grid1d
from ..errors import DeviceLimitError, VkharpError
from .rope import check_step, check_table

VARIANTS = ("decode", "prefill")
# Target vec4s of q (and as many of acc) per thread. CPU drivers (lavapipe) keep unrolled arrays in
# SIMD registers and spill cheaply, and pay most for element loads: big per-thread state wins there.
# GPUs have ~255 32-bit registers per thread at most: keep q + acc within 128 floats.
REGISTER_VEC4 = {"cpu": 48}
REGISTER_VEC4_DEFAULT = 16
MAX_KEY_TILE = 32
# Split decode (attention_decode_split): each query row's keys in slices of at least SLICE_MIN, one work
# group each, so that a long context keeps every compute unit of a GPU busy (SPLIT_GROUPS_GPU groups in
# all). CPU devices take 1 (no split): on lavapipe a group costs ~50 µs of its own and the slice merge
# more, so 4 slices of 2,000 keys measured 1.8x slower than one group per row (30 dependent dispatches
# of SmolLM2's attention replayed: 1.65 against 0.81 ms each).
SLICE_MIN = 64
SPLIT_GROUPS_GPU = 256
MAX_SPLITS = 32


KV_ITEM_BYTES = {"f16": 2, "f32": 4}   # bytes per cached element, by cache type
KV_DTYPES = tuple(KV_ITEM_BYTES)


def check_kv_type(dtype: str, head_dim: int) -> None:
    """A clear error for a cache type that is unknown, or f16 on a head dim it cannot hold."""
    if dtype not in KV_DTYPES:
        raise VkharpError(f"KV cache type {dtype!r} is unknown; use one of {', '.join(KV_DTYPES)}")
    if dtype == "f16" and head_dim % 8:
        raise VkharpError(f"an f16 KV cache needs head_dim a multiple of 8, this model's is {head_dim}; "
                          f"use an f32 cache (--kv-type f32)")


def kv_cache_buffers(device: Device, ctx: int, n_kv_heads: int, head_dim: int, name: str = "kv",
                     layers: int = 1, dtype: str = "f32"):
    """(k_cache, v_cache) store buffers [layers, n_kv_heads, ctx, head_dim] (layers stacked so that one
    pipeline serves them all, the layer chosen per dispatch). dtype "f32", or "f16": u32 words each
    holding two halves ([..., head_dim / 2] words; head_dim a multiple of 8, so that a uvec4 holds
    whole pairs of vec4s), half the bytes for attention to read and for the cache to hold."""
    check_kv_type(dtype, head_dim)
    item = KV_ITEM_BYTES[dtype]
    per_buffer = ctx * n_kv_heads * head_dim * item
    if per_buffer * layers > device.max_buffer_bytes and layers > 1:
        raise DeviceLimitError(f"{layers} layers of KV cache do not fit one buffer; stack fewer")
    if per_buffer > device.max_buffer_bytes:
        max_ctx = device.max_buffer_bytes // (n_kv_heads * head_dim * item)
        raise DeviceLimitError(f"a KV cache of {ctx} positions x {n_kv_heads} kv heads x {head_dim} ({dtype}) needs "
                               f"{per_buffer / 2**20:.1f} MiB per K (and per V) buffer, over "
                               f"{device.info.name}'s {device.max_buffer_bytes / 2**20:.1f} MiB per-buffer limit; "
                               f"use a context of at most {max_ctx} positions")
    if dtype == "f16":
        shape, np_dtype = (layers, n_kv_heads, ctx, head_dim // 2), np.uint32
    else:
        shape, np_dtype = (layers, n_kv_heads, ctx, head_dim), np.float32
    return (device.buffer(shape, np_dtype, "store", name=f"{name}.k_cache"),
            device.buffer(shape, np_dtype, "store", name=f"{name}.v_cache"))


def cache_dtype(cache: Buffer) -> str:
    """"f16" for a cache of packed half pairs (u32 words), "f32" for a float one."""
    return "f16" if np.dtype(cache.dtype) == np.uint32 else "f32"


def check_cache_pair(k_cache: Buffer, v_cache: Buffer, row: int, what: str, layer: int) -> int:
    """Positions per layer of a cache pair (checked), for launchers that write the cache."""
    return _cache_ctx(k_cache, v_cache, row, what, layer)


def _cache_ctx(k_cache: Buffer, v_cache: Buffer, row: int, what: str, layer: int) -> int:
    """Positions per layer of a [HK, CTX, D] or layer-stacked [L, HK, CTX, D] cache (f16: D / 2 words);
    checks `layer`. `row` = HK * D."""
    kind = cache_dtype(k_cache)
    if kind != cache_dtype(v_cache):
        raise VkharpError(f"{what}: the K cache is {kind} and the V cache {cache_dtype(v_cache)}")
    words = row // 2 if kind == "f16" else row
    if k_cache.size != v_cache.size or k_cache.size % words or (kind == "f16" and row % 8):
        raise VkharpError(f"{what}: caches {k_cache.shape} / {v_cache.shape} are not the same whole number of "
                          f"{kind} rows of n_kv_heads * head_dim = {row}")
    layers = k_cache.shape[0] if len(k_cache.shape) == 4 else 1
    if not 0 <= layer < layers:
        raise VkharpError(f"{what}: layer {layer} is not in the cache's {layers} stacked layers")
    return k_cache.size // words // layers


def kv_append(rec: Recorder, k_cache: Buffer, v_cache: Buffer, k: Buffer, v: Buffer, step: Buffer, *,
              n_kv_heads: int | None = None, head_dim: int | None = None, layer: int = 0, wg: int = 64,
              second: tuple[Buffer, Buffer] | None = None):
    """Write chunk rows t < P_NTOK of k, v f32[N, HK, D] into cache rows P_POS + t (f16 caches:
    rounded to half, two per word).

    second=(k_cache2, v_cache2): HARP's two streams (N = 2, both at P_POS): row 1 goes to these."""
    if n_kv_heads is None or head_dim is None:
        if len(k.shape) != 3:
            raise VkharpError(f"kv_append: k {k.shape} is not (tokens, kv_heads, head_dim); pass n_kv_heads and head_dim")
        n_kv_heads, head_dim = k.shape[1], k.shape[2]
    row = n_kv_heads * head_dim
    if k.size != v.size or k.size % row:
        raise VkharpError(f"kv_append: k {k.shape} and v {v.shape} must be the same [tokens, {n_kv_heads}, {head_dim}]")
    ctx = _cache_ctx(k_cache, v_cache, row, "kv_append", layer)
    check_step(step, "kv_append")
    n = k.size // row
    bufs, name = [k_cache, v_cache, k, v, step], "kv_append"
    if second is not None:
        bufs, name = bufs + list(second), "kv_append_dual"
        _check_second(second, k_cache, n, "kv_append")
    kv16 = cache_dtype(k_cache) == "f16"
    rec.dispatch(name, bufs, grid1d(rec.device, k.size // 2 if kv16 else k.size, wg),
                 {"WG": wg, "N": n, "HK": n_kv_heads, "D": head_dim, "CTX": ctx, "KV16": int(kv16)}, {"layer": layer})


def _check_second(second, k_cache: Buffer, n: int, what: str) -> None:
    if n != 2 or len(second) != 2 or any(c.shape != k_cache.shape or c.dtype != k_cache.dtype for c in second):
        raise VkharpError(f"{what}: the two-stream form needs N = 2 rows and second caches shaped like the first "
                          f"{k_cache.shape}, got N = {n}, {[c.shape for c in second]}")


def _decode_shared_bytes(wg: int, hpg: int, team: int, d: int, rope: bool = False) -> int:
    ks = wg // team
    rope_bytes = 4 * (hpg * d + d) if rope else 0     # the rotated query heads and own key
    return 4 * (2 * wg * hpg + ks * hpg + (ks // 2) * hpg * d + 4 + (ks // 2) * hpg + 1) + rope_bytes


def _register_vec4(device: Device) -> int:
    return REGISTER_VEC4.get(device.info.type, REGISTER_VEC4_DEFAULT)


def _decode_layout(device: Device, g: int, d: int, wg: int, hpg: int | None, team: int | None,
                   rope: bool = False, kv16: bool = False) -> tuple[int, int]:
    """(heads per group, team size) for attention_decode, from a rough cost model.

    Per key and query head: 8 * (d/4) / hpg for reading the key and value rows (shared by hpg heads;
    element loads dominate on CPU drivers) plus team**2 for exchanging partial scores in shared memory.
    Each thread holds hpg * d / (4 * team) vec4s of q and as many of acc: at most _register_vec4, so
    that the compiler can keep them in registers (unrolled loops). An f16 cache is read 8 halves
    (two vec4s) at a time: a thread then owns an even number of vec4s.
    """
    d4, budget = d // 4, _register_vec4(device)
    best = None
    for h in (h for h in range(1, g + 1) if g % h == 0 and hpg in (None, h)):
        for t in (t for t in (1, 2, 4, 8, 16, 32, 64) if d4 % t == 0 and t <= wg and team in (None, t)
                  and not (kv16 and (d4 // t) % 2)):
            if _decode_shared_bytes(wg, h, t, d, rope) > device.info.max_shared_memory:
                continue
            cost = 8 * d4 / h + (t * t if t > 1 else 0)
            over = max(0, h * d4 // t - budget)      # registers first, then cost
            if best is None or (over, cost) < best[0]:
                best = ((over, cost), h, t)
    if best is None:
        raise DeviceLimitError(f"attention_decode: no layout of head_dim {d}, {g} heads per kv head and work-group "
                               f"{wg} fits the device's {device.info.max_shared_memory} bytes of shared memory"
                               + (f" with heads_per_group={hpg}, team={team}" if hpg or team else ""))
    return best[1], best[2]


def _prefill_heads(device: Device, g: int, d: int) -> int:
    """Heads per thread in attention_prefill: the most (each staged key then serves more rows) whose
    q and acc stay within _register_vec4 vec4s each."""
    budget = _register_vec4(device)
    return max(h for h in range(1, g + 1) if g % h == 0 and (h * d // 4 <= budget or h == 1))


def _prefill_key_tile(device: Device, d: int, want: int | None) -> int:
    tk = want or MAX_KEY_TILE
    while tk > 1 and 2 * tk * d * 4 > device.info.max_shared_memory:
        tk //= 2
    if 2 * tk * d * 4 > device.info.max_shared_memory:
        raise DeviceLimitError(f"attention_prefill: head_dim {d} needs {8 * d} bytes of shared memory per key; "
                               f"the device has {device.info.max_shared_memory}")
    return tk


def default_splits(device: Device, base_groups: int, ctx: int) -> int:
    """Key slices per query row for decode: on GPUs enough groups to fill the device, never slices
    shorter than SLICE_MIN keys of the cache; 1 (the plain decode variant) on CPU devices."""
    if device.info.type == "cpu":
        return 1
    return max(1, min(MAX_SPLITS, -(-SPLIT_GROUPS_GPU // base_groups), -(-ctx // SLICE_MIN)))


def texel_caches(device: Device, k_cache: Buffer, texel: bool | None = None) -> bool:
    """Whether attention reads the caches as texel buffers (the _tx variants: imageLoad of one uvec4).
    Default: on CPU devices, where it was measured (lavapipe runs a storage-buffer load as a scalar loop
    over its SIMD lanes, an image load as one gather); GPUs keep storage buffers. Either way only where
    a cache buffer fits one texel-buffer view (maxTexelBufferElements uvec4s)."""
    fits = device.texel_view_fits(k_cache)   # v_cache (and a second stream's) have its shape
    if texel and not fits:
        raise DeviceLimitError(f"attention: a cache buffer of {k_cache.size * 4} bytes exceeds the device's texel "
                               f"buffers ({device.info.max_texel_elements} texels of 16 bytes)")
    return fits and (device.info.type == "cpu" if texel is None else bool(texel))


def _split_work(device: Device, n_states: int, base_groups: int) -> tuple[Buffer, Buffer]:
    """The split variant's scratch: slice states and per-row counts (zero at rest: the merging group
    resets its count), shared by every split attention dispatch of the device (they never overlap)."""
    cache = device.__dict__.setdefault("_attention_split_work", {})
    key = (n_states, base_groups)
    if key not in cache:
        cache[key] = (device.buffer((n_states,), np.float32, "act", name="attention.split_states"),
                      device.buffer((base_groups,), np.uint32, "act", name="attention.split_counts"))
    return cache[key]


def default_wg(info, variant: str = "prefill") -> int:
    """32 invocations; on a GPU whose subgroups are wider (AMD's wave64), one whole subgroup. The decode
    variant on a CPU device: one SIMD program (its subgroup) per group, so that a layer's few groups
    are not serial rounds of one thread each: on lavapipe (8 lanes) 30 layers of SmolLM2's decode
    attention took 7.0 ms at wg 8 against 14.6 at 32 with 128 cached positions, 47 against 61 ms with
    2,000 (interleaved rounds); the prefill variant measured best at 32, its shuffle layout
    (prefill_shuffles) at one subgroup: 30 layers of a 32-token chunk at position 480, 31 ms at wg 8
    against 40 at 32 (and 139 ms for the shared-memory tile at 32)."""
    sg = int(info.subgroup_size or 1)
    pow2 = sg > 0 and not sg & (sg - 1)
    if info.type == "cpu":
        return sg if variant in ("decode", "prefill_shfl") and pow2 and 4 <= sg <= 32 else 32
    if 32 < sg <= info.max_workgroup_invocations and pow2:
        return sg
    return 32


SUBGROUP_SHUFFLE = 0x10   # VK_SUBGROUP_FEATURE_SHUFFLE_BIT


def prefill_shuffles(info) -> bool:
    """attention_prefill_shfl on CPU devices with subgroup shuffles: lavapipe reads a key staged in
    shared memory lane by lane for every row of a SIMD program; a shuffle hands it over in one
    permute. GPUs keep the shared-memory tile (coalesced, one load per key for the whole group).
    The layout assumes the shader runs with the reported subgroup size (fixed on lavapipe; a GPU
    whose compiler picks the size, as Intel's, would need VK_EXT_subgroup_size_control first)."""
    sg = int(info.subgroup_size or 0)
    return info.type == "cpu" and bool(info.subgroup_ops & SUBGROUP_SHUFFLE) and sg >= 1 and 32 % sg == 0


def attention(rec: Recorder, out: Buffer, q: Buffer, k: Buffer, v: Buffer, k_cache: Buffer, v_cache: Buffer,
              step: Buffer, *, n_heads: int, n_kv_heads: int, head_dim: int, scale: float, window: int = 0,
              layer: int = 0,
              softcap: float = 0.0, variant: str | None = None, wg: int | None = None,
              heads_per_group: int | None = None, team: int | None = None, key_tile: int | None = None,
              second: tuple[Buffer, Buffer] | None = None, splits: int | None = None,
              rope: tuple[Buffer, int, float] | None = None, shuffle: bool | None = None,
              texel: bool | None = None):
    """out f32[N, n_heads, head_dim] = causal softmax attention of the chunk over cache + chunk.

    variant: "decode" (a work-group's threads split the key positions; for few query rows),
    "prefill" (a thread per token and head block, keys staged in shared memory), or None: decode
    when the prefill variant would have fewer than 32 threads with work. Both are correct for any N.
    heads_per_group / team / key_tile override the layout chosen from the shapes (tests, tuning);
    wg defaults to default_wg (whole subgroups on GPUs).
    second=(k_cache2, v_cache2): HARP's two streams (N = 2 rows at the same position P_POS; row 1
    attends over these caches); the decode variant.
    splits: decode only: key slices per query row, one work group each, merged by the last one to
    finish (default_splits: more for a longer cache and a wider device; 1 = no split).
    rope=(inv_freq, rope_layer, q_scale): decode of one token (N = 1) or of the two-stream pair, with
    q and k unrotated: RoPE (rope_half, inv_freq f32[ROT/2] or f32[L, ROT/2], table `rope_layer`, q's
    rotated dims times q_scale) and the KV append of the rotated key and v to cache layer `layer`
    are done in this dispatch (ops.rope with append=, then attention, in one).
    shuffle: prefill only: keys passed between lanes by subgroup shuffles instead of a shared-memory
    tile (attention_prefill_shfl; default: on CPU devices that have subgroup shuffles, see
    prefill_shuffles). wg must then be a multiple of the subgroup size.
    texel: read the caches as texel buffers (None: texel_caches' default); the prefill tile layout
    (shuffle off) always reads storage buffers.
    """
    if n_heads <= 0 or n_kv_heads <= 0 or n_heads % n_kv_heads:
        raise VkharpError(f"attention: n_heads {n_heads} is not a multiple of n_kv_heads {n_kv_heads}")
    if head_dim <= 0 or head_dim % 4 or window < 0:
        raise VkharpError(f"attention: head_dim {head_dim} must be a positive multiple of 4 and window {window} >= 0")
    qrow, kvrow = n_heads * head_dim, n_kv_heads * head_dim
    if q.size % qrow or out.size != q.size:
        raise VkharpError(f"attention: q {q.shape} / out {out.shape} are not [tokens, {n_heads}, {head_dim}]")
    n = q.size // qrow
    if k.size != n * kvrow or v.size != n * kvrow:
        raise VkharpError(f"attention: k {k.shape} / v {v.shape} are not [{n}, {n_kv_heads}, {head_dim}]")
    ctx = _cache_ctx(k_cache, v_cache, kvrow, "attention", layer)
    check_step(step, "attention")
    g = n_heads // n_kv_heads
    if heads_per_group is not None and (heads_per_group <= 0 or g % heads_per_group):
        raise VkharpError(f"attention: heads_per_group {heads_per_group} does not divide the {g} query heads "
                          f"of a kv head")
    if second is not None:
        _check_second(second, k_cache, n, "attention")
        variant = "decode"
    if rope is not None:
        if variant not in (None, "decode") or (n != 1 and second is None):
            raise VkharpError(f"attention: the fused RoPE form is the decode variant of one token (or the two-stream "
                              f"pair), got variant {variant!r} with N = {n}")
        variant = "decode"
    if variant is None:
        variant = "decode" if n * (g // _prefill_heads(rec.device, g, head_dim)) < 32 else "prefill"
    if variant not in VARIANTS:
        raise VkharpError(f"attention variant {variant!r} is unknown; use one of {', '.join(VARIANTS)}")
    if variant != "prefill" and shuffle:
        raise VkharpError("attention: shuffle= is a prefill-variant layout")
    shuffle = variant == "prefill" and (prefill_shuffles(rec.device.info) if shuffle is None else shuffle)
    wg = default_wg(rec.device.info, "prefill_shfl" if shuffle else variant) if wg is None else wg
    if wg > rec.device.info.max_workgroup_invocations:
        raise DeviceLimitError(f"attention: work-group size {wg} exceeds the device's "
                               f"{rec.device.info.max_workgroup_invocations}")
    kv16 = cache_dtype(k_cache) == "f16"
    consts = {"WG": wg, "N": n, "HQ": n_heads, "HK": n_kv_heads, "D": head_dim, "CTX": ctx,
              "SCALE": float(scale), "WINDOW": int(window), "SOFTCAP": float(softcap), "KV16": int(kv16)}
    if variant == "decode":
        if wg & (wg - 1):
            raise VkharpError(f"attention_decode: work-group size {wg} must be a power of two")
        hpg, team = _decode_layout(rec.device, g, head_dim, wg, heads_per_group, team, rope is not None, kv16)
        groups = n * n_kv_heads * (g // hpg)
        consts.update(HPG=hpg, TEAM=team)
        if splits is None:
            splits = default_splits(rec.device, groups, ctx) if n <= 2 else 1
        if isinstance(splits, bool) or not isinstance(splits, int) or not 1 <= splits <= MAX_SPLITS:
            raise VkharpError(f"attention: splits must be an integer in 1..{MAX_SPLITS}, got {splits!r}")
    elif splits not in (None, 1):
        raise VkharpError("attention: key splits are a decode-variant layout")
    else:
        hpg = heads_per_group or _prefill_heads(rec.device, g, head_dim)
        consts.update(TK=_prefill_key_tile(rec.device, head_dim, key_tile), HPG=hpg)
        groups = n_kv_heads * (-(-(n * (g // hpg)) // wg))
    if shuffle:
        sg = int(rec.device.info.subgroup_size or 0)
        if not rec.device.info.subgroup_ops & SUBGROUP_SHUFFLE or sg < 1 or wg % sg:
            raise DeviceLimitError(f"attention_prefill_shfl needs subgroup shuffles and a work group of whole "
                                   f"subgroups; this device: subgroup size {sg}, work group {wg}")
        consts["SG"] = sg
    bufs, name = [out, q, k, v, k_cache, v_cache, step], f"attention_{variant}" + ("_shfl" if shuffle else "")
    if second is not None:
        bufs, name = bufs + list(second), "attention_decode_dual"
    if variant == "decode" and splits > 1:
        bufs += list(_split_work(rec.device, n * n_heads * splits * (head_dim + 2), groups))
        name += "_split"
        consts.update(SPLITS=splits, SLICE_MIN=SLICE_MIN)
        groups *= splits
    push = {"layer": layer}
    if rope is not None:
        inv_freq, rope_layer, q_scale = rope
        bufs, name = bufs + [inv_freq], name + "_rope"
        consts.update(ROT=check_table(inv_freq, rope_layer, head_dim, q_scale, "attention (rope)"))
        if q_scale != 1.0:
            consts["QSCALE"] = float(q_scale)
        push["rope_layer"] = rope_layer
    if (variant == "decode" or shuffle) and texel_caches(rec.device, k_cache, texel):
        name += "_tx"
    rec.dispatch(name, bufs, grid1d(rec.device, groups, 1), consts, push)
