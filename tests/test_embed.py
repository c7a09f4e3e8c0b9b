"""shaders/embed.comp against engine/reference/embed.py: every weight format, split tables,
out-of-range ids, and HARP's dropout mask agreeing bit for bit with engine/rng.py."""
import numpy as np
import pytest

from engine import params, quant, shaders
from engine.errors import VkharpError
from engine.ops.embed import embed
from engine.reference.embed import embed as ref_embed
from engine.weights import upload_weight

VOCAB = 37
# The shader computes one float32 product (decoded weight * scale; decoding itself is exact) and
# the twin rounds the same product in float32: equal. 2 ulp per element leaves room for a driver
# that flushes an f16 denormal scale; the set of zeros must agree exactly.
ULPS = 2 * 2.0 ** -23


def _cols(fmt):
    # q formats need whole blocks (k-quants: 256-column super-blocks); f32/f16 get an odd width
    return (512 if quant.block_cols(fmt) == 256 else 96) if quant.has_scales(fmt) else 75


def _table(device, rng, fmt, split, vocab=VOCAB):
    packed = quant.quantize(rng.standard_normal((vocab, _cols(fmt))).astype(np.float32), fmt)
    # Split: 7 rows per part (odd: f16 scale pairs straddle parts), 6 parts, the last one short.
    max_bytes = packed.qs.shape[1] * 4 * 7 if split else None
    table = upload_weight(device, packed, f"emb_{fmt}", max_bytes=max_bytes)
    assert len(table.parts) == (6 if split else 1)
    return packed, table


# In range, at part boundaries (6|7, 34|35), the last row, and out of range.
IDS = np.array([3, 6, 7, 13, 14, 35, 36, 0, VOCAB, VOCAB + 5, 0xFFFFFFFF, 34, 20, 21, 6], np.uint32)


def _check(got, want):
    np.testing.assert_array_equal(got == 0, want == 0)
    assert np.all(np.abs(got - want) <= ULPS * np.abs(want))


def _record(device, table, ids, step, **kw):
    # Pre-filled with a sentinel: an element no part writes shows up.
    out = device.buffer(np.full((ids.size, table.cols), 7.5, np.float32), name="emb_out")
    ib = device.buffer(ids, name="ids")
    rec = device.recorder()
    if step is not None:
        rec.upload(step)
    embed(rec, out, table, ib, step, **kw)
    return rec.finish(), out


@pytest.mark.parametrize("fmt", quant.FORMATS)
@pytest.mark.parametrize("split", [False, True])
@pytest.mark.parametrize("dropout", [False, True])
def test_embed(device, rng, fmt, split, dropout):
    packed, table = _table(device, rng, fmt, split)
    wg = {"f32": 32, "f16": 64, "q8_0": 256, "q4_0": 64, "q4_1": 32, "q5_0": 64, "q5_1": 32, "q4_k": 128,
          "q5_k": 64, "q6_k": 96, "iq4_nl": 64, "iq4_xs": 128, "q2_k": 96, "q3_k": 32}[fmt]
    scale = float(np.sqrt(_cols(fmt)))  # Gemma's sqrt(hidden)
    step = device.buffer(params.STEP_WORDS, np.uint32, name="step") if dropout else None
    values = dict(pos=41, seed=2024, drop_on=1, drop_p=0.3)
    if dropout:
        params.write_step(step, **values)
    prog, out = _record(device, table, IDS, step, scale=scale, dropout=dropout, wg=wg)
    assert prog.n_dispatches == len(table.parts) and prog.n_barriers == 1 + (step is not None)   # start (+ after the upload)
    prog.run()
    got = out.read().reshape(IDS.size, table.cols)
    want = ref_embed(packed, IDS, params.pack_step(**values), scale=scale, dropout=dropout)
    _check(got, want)
    assert np.all(got[IDS >= VOCAB] == 0)
    if not dropout:
        # real rows (q4_0 decodes q = 8 to an exact 0: ~12%; q3_k's q = 4 of 8 codes, with the largest
        # |w| of 16 at code -4: |w| < max/8, ~19% of a normal sample)
        assert np.mean(got[IDS < VOCAB] == 0) < (0.3 if fmt == "q3_k" else 0.2)


@pytest.mark.parametrize("split", [False, True])
def test_dropout_mask_is_bit_exact_across_replays(device, rng, split):
    """f32 table with no zeros: the zeros are exactly the mask. Replays read new step values."""
    packed = quant.quantize(rng.uniform(0.5, 1.5, (VOCAB, 203)).astype(np.float32), "f32")
    table = upload_weight(device, packed, "emb", max_bytes=203 * 4 * 10 if split else None)
    ids = rng.integers(0, VOCAB, 29).astype(np.uint32)
    step = device.buffer(params.STEP_WORDS, np.uint32, name="step")
    prog, out = _record(device, table, ids, step, dropout=True)
    masks = []
    for values in [dict(pos=0, seed=1, drop_on=1, drop_p=0.2), dict(pos=0, seed=2, drop_on=1, drop_p=0.2),
                   dict(pos=2**32 - 10, seed=2, drop_on=1, drop_p=0.5), dict(pos=5, seed=3, drop_on=0, drop_p=0.5)]:
        params.write_step(step, **values)
        prog.run()
        got = out.read().reshape(ids.size, 203)
        want = ref_embed(packed, ids, values, dropout=True)
        np.testing.assert_array_equal(got, want)
        dropped = got == 0
        if values["drop_on"]:
            p = values["drop_p"]
            assert abs(dropped.mean() - p) < 5 * np.sqrt(p * (1 - p) / dropped.size)
        else:
            assert not dropped.any()
        masks.append(dropped)
    assert (masks[0] != masks[1]).mean() > 0.2  # the seed comes from the step buffer at replay


def test_mask_does_not_depend_on_chunking(device, rng):
    """Positions pos..pos+n as one chunk or as two: the same mask (what a KV-cached HARP needs)."""
    packed = quant.quantize(rng.uniform(0.5, 1.5, (VOCAB, 64)).astype(np.float32), "f32")
    table = upload_weight(device, packed, "emb")
    ids = rng.integers(0, VOCAB, 12).astype(np.uint32)
    step = device.buffer(params.STEP_WORDS, np.uint32, name="step")
    parts = []
    for lo, hi in [(0, 12), (0, 5), (5, 12)]:
        params.write_step(step, pos=100 + lo, seed=9, drop_on=1, drop_p=0.25)
        prog, out = _record(device, table, ids[lo:hi], step, dropout=True)
        prog.run()
        parts.append(out.read().reshape(hi - lo, 64))
    np.testing.assert_array_equal(parts[0], np.concatenate(parts[1:]))


def test_plain_variant_does_not_bind_the_step_buffer():
    assert len(shaders.get("embed_q8_0").bindings) == 4       # out, ids, quants, scales
    assert len(shaders.get("embed_q8_0_drop").bindings) == 5
    assert len(shaders.get("embed_f16").bindings) == 3


def test_bad_inputs(device, rng):
    _, table = _table(device, rng, "f32", False)
    ids, out = device.buffer(np.zeros(4, np.uint32)), device.buffer((4, 75))
    rec = device.recorder()
    with pytest.raises(VkharpError, match="ids"):
        embed(rec, out, table, device.buffer(np.zeros(4, np.float32)))
    with pytest.raises(VkharpError, match=r"must be f32 \[4, 75\]"):
        embed(rec, device.buffer((4, 74)), table, ids)
    with pytest.raises(VkharpError, match="needs the step buffer"):
        embed(rec, out, table, ids, None, dropout=True)
    with pytest.raises(VkharpError, match="scale must be finite"):
        embed(rec, out, table, ids, scale=float("inf"))


@pytest.mark.parametrize("fmt", ["f32", "q4_1"])
@pytest.mark.parametrize("split", [False, True])
def test_two_streams_reframe_only_the_second_row(device, rng, fmt, split):
    packed, table = _table(device, rng, fmt, split)
    ids = np.array([13, 13], np.uint32)
    step = device.buffer(params.STEP_WORDS, np.uint32, name="step")
    values = dict(pos=41, seed=77, drop_on=1, drop_p=0.3)
    params.write_step(step, **values)
    prog, out = _record(device, table, ids, step, dropout=True, dual=True)
    prog.run()
    got = out.read().reshape(2, table.cols)
    want = ref_embed(packed, ids, params.pack_step(**values), dropout=True, dual=True)
    _check(got, want)
    plain = ref_embed(packed, ids[:1], None)
    np.testing.assert_array_equal(got[0], plain[0])                      # row 0: the original embedding
    lone = ref_embed(packed, ids[:1], params.pack_step(**values), dropout=True)
    np.testing.assert_array_equal(got[1], lone[0])                       # row 1: as a lone token at pos 41
    assert 0.15 < np.mean(got[1] == 0) < 0.45
