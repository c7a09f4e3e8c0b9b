"""Launchers for shaders/matvec.comp (decode) and shaders/matmul.comp (prefill): x·Wᵀ (+ b).

Both record one dispatch per weight part (`rec.parallel()`: parts write disjoint rows of `out`).
Two output modes fuse what would be several dispatches into one sweep of a row-stacked matrix
(engine/model.py stacks them at load): `out=(q, k, v)` splits the rows of [Wq; Wk; Wv] into three
outputs, and `glu="silu"|"gelu_tanh"` turns [Wg; Wu] into act(x·Wgᵀ)·(x·Wuᵀ) in the epilogue.
How a dispatch splits its part is a `Tiling` (see shaders/include/matmul_core.glsl); `choose_tiling`
picks one per device. The CPU defaults come from measurements on lavapipe (tools/bench_matmul.py),
where the cost of a kernel is the number of (load instruction x lane) it executes and the compile
time of a pipeline grows with the square of the registers a lane holds: 16-byte loads, activations
held in registers across many rows, a 64-byte line per lane per run, whole rows per lane when they
are narrow (576 columns), a few column lanes when they are wide, and for prefill a token tile that
shares every weight load.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace

import numpy as np

from ..device import Buffer, Recorder, grid1d
from ..errors import VkharpError
from ..quant import BLOCK, check_format
from ..weights import DeviceWeight

# RUN values (32-column blocks per scale load) each format has variants for. With storage-buffer loads
# on lavapipe the best was the run whose quants fill one 64-byte cache line per lane (q4: 4 blocks,
# q8_0: 2, f16: 1); CPU devices now stream RUN 1 through texel buffers (below).
# The 5-bit formats load 4 blocks' high bits as one uvec4 (RUN <= 4; q5_0 also RUN 8, two such loads per
# run, its 8 f16 scales one uvec4); the k-quants' runs stay inside
# one 256-column super-block (RUN <= 8), whose scales are one load per run. iq4_nl: as q4_0; iq4_xs: as q4_k;
# q2_k, q3_k: as q6_k (two blocks' 2-bit words per uvec4; q3_k's high words 4 blocks per uvec4).
RUNS = {"f32": (1,), "f16": (1,), "q8_0": (1, 2, 4, 8), "q4_0": (1, 2, 4, 8), "q4_1": (1, 2, 4),
        "q5_0": (1, 2, 4, 8), "q5_1": (1, 2, 4), "q4_k": (1, 2, 4, 8), "q5_k": (1, 2, 4, 8), "q6_k": (1, 2, 4, 8),
        "iq4_nl": (1, 2, 4, 8), "iq4_xs": (1, 2, 4, 8), "q2_k": (1, 2, 4, 8), "q3_k": (1, 2, 4, 8)}
SUBGROUP_RUNS = {"f32": (1,), "f16": (1,), "q8_0": (1, 2), "q4_0": (1, 2), "q4_1": (1, 2),   # `_sg` variants
                 "q5_0": (1, 2), "q5_1": (1, 2), "q4_k": (1, 2), "q5_k": (1, 2), "q6_k": (1, 2),
                 "iq4_nl": (1, 2), "iq4_xs": (1, 2), "q2_k": (1, 2), "q3_k": (1, 2)}
MAX_UNROLL = 32        # loops indexing register arrays must have <= 32 iterations (Mesa unrolls them)
# CPU devices (lavapipe): one lane per row (CL = 1) in the streaming nest (matmul_core.glsl, XB): a
# lane sums CPU_STREAM_ROWS of its rows at once for the group's tokens, fetching x one 32-column
# block at a time (RUN 1) through texel buffers. It holds one block of x and XB x TN sums instead of
# whole rows of x, with no partial sums in shared memory and no group barriers. Measured on a Zen 1
# host, interleaved, GMAC/s against the earlier tilings (column lanes meeting in shared memory, x
# held whole; storage buffers for prefill):
#   prefill (128 tokens, TN 8):  3072x576 9.2 against 2.3, 576x1536 8.6 against 2.2;
#   decode (TN 1):               3072x576 2.4 against 1.7 and 576x1536 1.7 against 1.5 (XB 16),
#                                49152x576 q8_0 (the head) 4.1 against 3.1 (XB 32; 3.6 at XB 16);
#   HARP's two streams (TN 2):   3072x576 3.2 against 2.1.
# In SmolLM2's steps (timestamps, interleaved in one process; the host drifted +-20 % between
# processes), these defaults against the earlier decode tilings: the decode step 66.0 against 80.0 ms,
# the two-stream step 98.6 against 125.2. Decode folds the RMSNorm: its weights come through
# a texel buffer too, since the streaming nest reads them again for every XB rows (from a storage
# buffer the nest lost: 114.5 against 86.6 ms).
# RUN 2 ran a few per cent faster at TN 8 but compiled 2.5x slower (6.4 against 2.5 s per
# pipeline); TN 16 compiled in 12-18 s and ran slower. (A barrier-free CL = 1 nest holding the whole
# row of x, 144 block-tokens per lane, reached 6.9 and compiled in 7 s.)
CPU_TILE_TOKENS = 8
CPU_STREAM_ROWS = 16          # prefill
CPU_STREAM_ROWS_DECODE = 32   # decode and HARP's two streams (TN <= 2: more rows fit the registers)
CPU_MAX_ROWS_PER_LANE = 128
SHARED_BUDGET = 16384  # bytes of partial sums per group (CL > 1), at most the device's limit


@dataclass(frozen=True)
class Tiling:
    """Work split of one dispatch. run=0 selects the scalar `_any` variant (any shape, slow)."""
    run: int                 # RUN: 32-column blocks per scale load
    col_lanes: int = 1       # CL: lanes sharing one row (partial sums meet in shared memory)
    row_lanes: int = 8       # RL: lanes on different rows
    rows_per_lane: int = 8   # RPL: rows each lane streams through with the same activations
    tokens: int = 1          # TN: tokens per work group (matmul): weights are read once per TN tokens
    rows_per_sum: int = 0    # RC: CL > 1: rows per lane between reductions (0: as many as fit)
    subgroup: bool = False   # SGR: partial sums added with subgroupAdd (`_sg` variants; RL must be 1)
    texel: bool = False      # TEXEL: quants, scales and x fetched from texel buffers (`_tx` variants)
    stream_rows: int = 0     # XB: CL = 1 only: rows a lane sums at once, fetching x run by run (0: x held whole)

    @property
    def wg(self) -> int:
        return self.col_lanes * self.row_lanes

    @property
    def shared_bytes_per_row(self) -> int:
        """Shared memory for one row per row lane of partial sums (TN > 1: whole vec4s of tokens)."""
        per_token = 1 if self.tokens == 1 else 4 * math.ceil(self.tokens / 4)
        return 4 * self.row_lanes * self.col_lanes * per_token if self.col_lanes > 1 else 0

    def shared_rows(self, max_bytes: int) -> int:
        """RC actually used: rows per lane whose partial sums fit in max_bytes of shared memory."""
        if self.col_lanes == 1:
            return 1
        fit = max(1, max_bytes // self.shared_bytes_per_row)
        return max(1, min(self.rows_per_sum or fit, fit, self.rows_per_lane))


def _lavapipe_threads() -> int:
    env = os.environ.get("LP_NUM_THREADS")
    if env is not None and env.strip().isdigit():
        return max(1, int(env))
    return max(1, os.cpu_count() or 1)


def choose_tiling(info, fmt: str, rows: int, cols: int, ntok: int = 1) -> Tiling:
    """A tiling that works on any device; tuned for CPU devices (lavapipe), plain for GPUs."""
    check_format(fmt)
    if cols % BLOCK:
        return Tiling(run=0)
    nb = cols // BLOCK
    simd = max(1, int(info.subgroup_size or 1))
    max_wg = int(info.max_workgroup_invocations)
    if info.type != "cpu":
        return _gpu_tiling(info, fmt, nb, ntok)
    tn = min(ntok, CPU_TILE_TOKENS)
    rl = max(1, min(simd, max_wg))
    want_groups = max(1, math.ceil(_lavapipe_threads() / math.ceil(ntok / tn)))   # a group per thread, at least
    rpl = max(1, min(CPU_MAX_ROWS_PER_LANE, math.ceil(rows / (rl * want_groups))))
    most = CPU_STREAM_ROWS_DECODE if ntok <= 2 else CPU_STREAM_ROWS
    xb = math.ceil(rpl / math.ceil(rpl / most))   # even rounds: 36 rows as 18 + 18 (0.32 against 0.63 ms
                                                  # for 576x1536 at TN 1 as 32 + 4)
    return Tiling(1, 1, rl, rpl, tn, texel=True, stream_rows=xb)


def _gpu_tiling(info, fmt: str, nb: int, ntok: int) -> Tiling:
    """GPUs: a run or two of blocks per column lane, whole subgroups per work group; not yet tuned on
    a real GPU. With subgroup arithmetic, the group is one team of whole subgroups per row (CL = WG:
    enough subgroups to cover the row's runs, at most 256 lanes) reduced with subgroupAdd; without
    it, column lanes meet in shared memory and RL row lanes round the group up to whole subgroups."""
    simd = max(1, int(info.subgroup_size or 1))
    max_wg = int(info.max_workgroup_invocations)
    run = max(r for r in RUNS[fmt] if nb % r == 0 and r <= 2)
    nrun = nb // run
    tn = min(ntok, 4)
    if info.subgroup_arithmetic and simd >= 2 and simd <= max_wg:
        per_wg = max(1, min(256, max_wg) // simd)
        cl = simd * max(1, min(math.ceil(nrun / simd), per_wg))
        while math.ceil(nrun / cl) > MAX_UNROLL and cl + simd <= max_wg:
            cl += simd
        return Tiling(run, cl, 1, 4, tn, subgroup=True)
    cl = min(nrun, 64, max_wg)
    rl = max(1, simd // math.gcd(cl, simd))
    while rl * cl < 64 and 2 * rl * cl <= max_wg:
        rl *= 2
    rl = max(1, min(rl, max_wg // cl))
    return Tiling(run, cl, rl, 4, tn)


GLU_ACTS = {"silu": 0, "gelu_tanh": 1}   # the GLU epilogue's activations (shaders/include/activation.glsl)


def _outputs(out) -> tuple:
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _check(op: str, out, weight: DeviceWeight, x: Buffer, bias: Buffer | None, ntok: int | None,
           glu: str | None = None):
    check_format(weight.format)
    name = weight.name or "weight"
    outs = _outputs(out)
    if len(outs) not in (1, 2, 3):
        raise VkharpError(f"{op}: out is one buffer, or two or three (a split of the stacked rows), got {len(outs)}")
    for b, what in ((x, "x"),) + tuple((o, "out") for o in outs) + (((bias, "bias"),) if bias is not None else ()):
        if b.dtype != np.float32:
            raise VkharpError(f"{op}: {what} buffer {b.name!r} must be f32, got {b.dtype}")
    if ntok is None:   # matmul: the token count comes from x
        if x.size % weight.cols:
            raise VkharpError(f"{op}: x has {x.size} values, not a multiple of {name}'s {weight.cols} columns")
        ntok = x.size // weight.cols
    elif x.size != weight.cols:
        raise VkharpError(f"{op}: x has {x.size} values but {name} has {weight.cols} columns")
    if glu is not None:
        if glu not in GLU_ACTS:
            raise VkharpError(f"{op}: glu must be one of {sorted(GLU_ACTS)}, got {glu!r}")
        if len(outs) != 1 or weight.rows % 2:
            raise VkharpError(f"{op}: the GLU epilogue needs one output and a [gate; up] matrix of even rows "
                              f"({name} has {weight.rows})")
        if outs[0].size != ntok * weight.rows // 2:
            raise VkharpError(f"{op}: out has {outs[0].size} values, expected {ntok} x {weight.rows // 2} "
                              f"(half the rows of {name})")
    elif len(outs) > 1:
        if any(o.size % ntok or o.size == 0 for o in outs) or sum(o.size for o in outs) != ntok * weight.rows:
            raise VkharpError(f"{op}: the {len(outs)} outputs hold {[o.size for o in outs]} values; they must split "
                              f"{ntok} x {weight.rows} rows of {name} by whole rows per token")
    elif outs[0].size != ntok * weight.rows:
        raise VkharpError(f"{op}: out has {outs[0].size} values, expected {ntok} x {weight.rows} rows of {name}")
    if bias is not None and bias.size != weight.rows * weight.layers:
        raise VkharpError(f"{op}: bias has {bias.size} values but {name} has {weight.layers} x {weight.rows} rows")
    return ntok


def _variant(op: str, fmt: str, t: Tiling, bias, residual: bool = False, norm: bool = False) -> str:
    return (f"{op}_{fmt}_{'any' if t.run == 0 else f'r{t.run}'}{'_sg' if t.subgroup else ''}"
            f"{'_bias' if bias is not None else ''}{'_norm' if norm else ''}{'_res' if residual else ''}"
            f"{'_tx' if t.texel and t.run else ''}")


def can_fold_norm(weight: DeviceWeight) -> bool:
    """Whether an RMSNorm of x can be folded into x·Wᵀ (the `_norm` variants need whole 32-column blocks)."""
    return weight.cols % BLOCK == 0


@dataclass(frozen=True)
class Norm:
    """An RMSNorm folded into the product's prologue: x → x / rms(x) · weight[layer] (f32[L, cols])."""
    weight: Buffer
    eps: float
    layer: int = 0


def _validate_tiling(op: str, fmt: str, cols: int, t: Tiling, max_wg: int, max_shared: int, info=None):
    if t.subgroup:
        if t.row_lanes != 1 or t.col_lanes < 2 or t.run not in SUBGROUP_RUNS.get(fmt, ()):
            raise VkharpError(f"{op}: a subgroup tiling needs RL = 1, CL >= 2 and RUN in "
                              f"{SUBGROUP_RUNS.get(fmt, ())} for {fmt}; got {t}")
        if info is not None and not info.subgroup_arithmetic:
            raise VkharpError(f"{op}: {info.name} has no subgroup arithmetic in compute shaders; "
                              f"use a tiling without subgroup=True")
    if t.run == 0:
        if fmt not in ("f32", "f16"):
            raise VkharpError(f"{op}: the scalar variant is for f32/f16; {fmt} needs a RUN in {RUNS[fmt]}")
        return
    if t.run not in RUNS[fmt]:
        raise VkharpError(f"{op}: RUN={t.run} is not available for {fmt}; choose one of {RUNS[fmt]}")
    nb = cols // BLOCK
    if cols % BLOCK or nb % t.run:
        raise VkharpError(f"{op}: {cols} columns are not whole runs of {t.run} 32-column blocks")
    cpl = math.ceil(nb // t.run / t.col_lanes)
    if t.stream_rows:
        if t.col_lanes != 1 or t.subgroup or t.stream_rows > MAX_UNROLL:
            raise VkharpError(f"{op}: a streaming tiling (stream_rows > 0) needs CL = 1, no subgroup sums and at "
                              f"most {MAX_UNROLL} rows at once; got {t}")
        cpl = 1   # runs are a loop of their own: nothing indexes registers by run
    if cpl > MAX_UNROLL or t.tokens > MAX_UNROLL or min(t.col_lanes, t.row_lanes, t.rows_per_lane, t.tokens) < 1:
        raise VkharpError(f"{op}: tiling {t} needs {cpl} runs per lane; at most {MAX_UNROLL} (use more column lanes)")
    if t.wg > max_wg:
        raise VkharpError(f"{op}: tiling {t} has {t.wg} lanes per group; the device allows {max_wg}")
    if t.shared_bytes_per_row > max_shared:
        raise VkharpError(f"{op}: tiling {t} needs {t.shared_bytes_per_row} bytes of shared memory per row; "
                          f"the device has {max_shared}")


def _glu_tiling(op: str, t: Tiling, max_shared: int) -> Tiling:
    """The GLU epilogue pairs logical rows 2p (gate) and 2p+1 (up) in one lane: an even number of rows
    per lane, and with column lanes an even number of rows per reduction round."""
    if t.run == 0:
        return t
    t = replace(t, rows_per_lane=t.rows_per_lane + t.rows_per_lane % 2,
                stream_rows=t.stream_rows + t.stream_rows % 2)
    if t.col_lanes > 1:
        rc = t.shared_rows(max_shared)
        rc -= rc % 2
        if rc < 2:
            raise VkharpError(f"{op}: the GLU epilogue needs the partial sums of two rows in shared memory; "
                              f"tiling {t} fits one")
        t = replace(t, rows_per_sum=rc)
    return t


def _record(op: str, rec: Recorder, out, weight: DeviceWeight, x: Buffer, bias: Buffer | None,
            ntok: int, tiling: Tiling | None, layer: int = 0, residual: bool = False, norm: Norm | None = None,
            glu: str | None = None):
    cols, dev = weight.cols, rec.device
    outs = _outputs(out)
    mode = 2 if glu is not None else 1 if len(outs) > 1 else 0
    if len(outs) == 2:   # (gate, up) of [Wg; Wu]: o2 gets no row (D0 + D1 = all), so o1 is bound twice
        outs = (outs[0], outs[1], outs[1])
    if residual and bias is not None:
        raise VkharpError(f"{op}: the residual epilogue has no bias form (add the bias separately)")
    if mode and residual:
        raise VkharpError(f"{op}: the residual epilogue has one output and no GLU")
    if mode == 2 and bias is not None:
        raise VkharpError(f"{op}: the GLU epilogue has no bias form")
    if norm is not None:
        if residual:
            raise VkharpError(f"{op}: a folded norm and the residual epilogue do not combine")
        if not can_fold_norm(weight):
            raise VkharpError(f"{op}: a norm folds only into whole 32-column blocks; {weight.name} has {cols} columns")
        if norm.weight.size % cols or not 0 <= norm.layer < norm.weight.size // cols:
            raise VkharpError(f"{op}: norm weight {norm.weight.shape} has no layer {norm.layer} of {cols} values")
    parts = weight.parts_for(layer)
    if mode == 2 and (len(parts) != 1 or parts[0][0].rows != weight.rows):
        raise VkharpError(f"{op}: the GLU epilogue needs each layer of {weight.name} in one buffer; it is split "
                          f"into {len(parts)} parts (use separate gate and up products)")
    max_shared = min(SHARED_BUDGET, dev.info.max_shared_memory)
    with rec.parallel():
        for part, wrow in parts:
            fmt = part.format or weight.format   # mixed-precision models change format per layer
            t = tiling or choose_tiling(dev.info, fmt, part.rows, cols, ntok)
            if ntok == 1:
                t = replace(t, tokens=1)
            if mode == 2:
                t = _glu_tiling(op, t, max_shared)
            if norm is not None and t.run == 0:
                raise VkharpError(f"{op}: a folded norm needs a RUN tiling, not the scalar one")
            _validate_tiling(op, fmt, cols, t, dev.info.max_workgroup_invocations, dev.info.max_shared_memory,
                             dev.info)
            if t.texel and not (dev.texel_view_fits(part.qs) and dev.texel_view_fits(x) and
                                (part.scales is None or dev.texel_view_fits(part.scales, 4)) and
                                (norm is None or dev.texel_view_fits(norm.weight))):
                t = replace(t, texel=False)     # a part or x too large for one texel view: storage buffers
            bufs = [outs[0], part.qs] + ([part.scales] if part.scales is not None else []) + [x]
            bufs += [norm.weight] if norm is not None else []
            bufs += [bias] if bias is not None else []
            bufs += [outs[1], outs[2]] if mode == 1 else [outs[0], outs[0]]   # o1, o2 (unused: o itself)
            consts = {"ROWS": part.rows, "COLS": cols, "NTOK": ntok, "ROW0": part.row0, "OUT_ROWS": weight.rows,
                      "OUT_MODE": mode}
            if mode == 1:
                consts.update(D0=outs[0].size // ntok, D1=outs[1].size // ntok)
            elif mode == 2:
                consts["GLU_ACT"] = GLU_ACTS[glu]
            if t.run == 0:
                wg = 64
                groups = grid1d(dev, ntok * part.rows, wg)
                consts.update(WG=wg)
            else:
                cpl = math.ceil(cols // BLOCK // t.run / t.col_lanes)
                rows_per_group = t.row_lanes * t.rows_per_lane
                n_groups = math.ceil(part.rows / rows_per_group) * math.ceil(ntok / t.tokens)
                groups = grid1d(dev, n_groups, 1)
                rc = t.shared_rows(max_shared)
                consts.update(WG=t.wg, TN=t.tokens, CL=t.col_lanes, CPL=cpl, RPL=t.rows_per_lane, RC=rc,
                              XB=min(t.stream_rows, t.rows_per_lane))
            push = {"wrow": wrow, "boff": layer * weight.rows}
            if norm is not None:
                consts["EPS"] = norm.eps
                push["noff"] = norm.layer * cols
            rec.dispatch(_variant(op, fmt, t, bias, residual, norm is not None), bufs, groups, consts, push)


def matvec(rec: Recorder, out, weight: DeviceWeight, x: Buffer, bias: Buffer | None = None,
           *, layer: int = 0, tiling: Tiling | None = None, residual: bool = False, norm: Norm | None = None,
           glu: str | None = None):
    """out[r] = sum_c W[r, c] * x[c] (+ bias[r]): x f32[cols], out f32[rows], bias f32[rows].

    For a layer-stacked weight (and bias f32[L, rows]) `layer` picks the layer. residual=True adds
    into out instead (out[r] += ..., the residual stream's add fused into the epilogue; no bias).
    norm=Norm(...): x is RMS-normalised first, inside the kernel (the norm's dispatch fused away).
    out=(o0, o1, o2): rows [0, |o0|) go to o0, the next |o1| to o1, the rest to o2 (q, k, v); out=(o0, o1)
    splits in two the same way ([Wg; Wu] into gate and up, where an adapter adds to each before the GLU).
    glu=act: W is [gate; up] (2F rows) and out f32[F] = act(gate·x) * (up·x)."""
    _check("matvec", out, weight, x, bias, 1, glu)
    _record("matvec", rec, out, weight, x, bias, 1, tiling, layer, residual, norm, glu)


def matmul(rec: Recorder, out, weight: DeviceWeight, x: Buffer, bias: Buffer | None = None,
           *, layer: int = 0, tiling: Tiling | None = None, residual: bool = False, norm: Norm | None = None,
           glu: str | None = None):
    """out[n, r] = sum_c x[n, c] * W[r, c] (+ bias[r]): x f32[N, cols], out f32[N, rows];
    residual=True: out[n, r] += ... (no bias); norm=Norm(...): each row of x RMS-normalised first;
    out=(o0, o1, o2) and glu=act as in matvec, per token."""
    ntok = _check("matmul", out, weight, x, bias, None, glu)
    _record("matmul", rec, out, weight, x, bias, ntok, tiling, layer, residual, norm, glu)
