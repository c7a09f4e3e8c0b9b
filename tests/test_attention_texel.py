"""Attention reading its KV caches as texel buffers (the _tx variants of shaders/attention.comp, the
CPU default: tools/kp/patches/0008) against the same variants reading storage buffers (the GPU
default). Only the loads differ, so the outputs and the fused forms' cache writes must be the same
bits; test_attention.py and test_kv_f16.py compare the default (texel, here) with the numpy twins."""
import numpy as np
import pytest

from engine.errors import DeviceLimitError
from engine.ops.attention import attention, texel_caches
from engine.params import pack_step
from test_attention import CTX, Q_GAIN
from util import rand

HQ, HK, D = 9, 3, 64
FORMS = {   # name: (tokens, attention keywords)
    "decode": (1, dict(variant="decode")),
    "split": (1, dict(variant="decode", splits=3)),
    "decode, 3 rows": (3, dict(variant="decode")),
    "prefill shuffles": (7, dict(variant="prefill", shuffle=True)),
    "rope": (1, dict(variant="decode", rope=True)),
    "split rope": (1, dict(variant="decode", splits=3, rope=True)),
    "dual": (2, dict(second=True)),
    "dual split": (2, dict(second=True, splits=3)),
    "dual rope": (2, dict(second=True, rope=True)),
    "dual split rope": (2, dict(second=True, splits=3, rope=True)),
}


def _caches(rng, dtype):
    """[2 layers, HK, CTX, D] K and V contents: f32 words, or f16 pairs as u32 words."""
    def one():
        x = rand(rng, 2, HK, CTX, D)
        return x.astype(np.float16).view(np.uint32) if dtype == "f16" else x
    return one(), one()


def _run(device, texel, n, kw, caches, second, q, k, v, inv, pos):
    kb, vb = (device.buffer(x.copy(), kind="act") for x in caches)
    bufs = [(kb, vb)]
    opts = dict(kw)
    if opts.pop("second", False):
        bufs.append(tuple(device.buffer(x.copy()) for x in second))
        opts["second"] = bufs[1]
    if opts.pop("rope", False):
        opts["rope"] = (inv, 0, 1.0)
    out, step = device.buffer((n, HQ, D)), device.buffer(pack_step(pos=pos, n_tokens=n))
    rec = device.recorder()
    attention(rec, out, *(device.buffer(x) for x in (q, k, v)), kb, vb, step, n_heads=HQ, n_kv_heads=HK, head_dim=D,
              scale=D ** -0.5, layer=1, texel=texel, **opts)
    rec.finish().run()
    return out.read(), [b.read() for pair in bufs for b in pair]


@pytest.mark.parametrize("dtype", ["f16", "f32"])
@pytest.mark.parametrize("form", list(FORMS))
def test_texel_reads_equal_storage_reads(device, rng, form, dtype):
    n, kw = FORMS[form]
    pos = 301 if n <= 2 else 250
    q, k, v = rand(rng, n, HQ, D, scale=Q_GAIN), rand(rng, n, HK, D), rand(rng, n, HK, D)
    inv = device.buffer((1.0 / 10000.0 ** (np.arange(0, D, 2, dtype=np.float32) / D))[None], kind="const")
    caches, second = _caches(rng, dtype), _caches(rng, dtype)
    got, got_caches = _run(device, True, n, kw, caches, second, q, k, v, inv, pos)
    want, want_caches = _run(device, False, n, kw, caches, second, q, k, v, inv, pos)
    assert np.abs(got).max() > 0
    np.testing.assert_array_equal(got, want)
    for a, b in zip(got_caches, want_caches):
        np.testing.assert_array_equal(a, b)
    if kw.get("rope"):   # the fused forms did write their row
        assert not np.array_equal(got_caches[0], caches[0].reshape(-1))


def test_texel_default_and_limit(device):
    kc = device.buffer((2, HK, CTX, D))
    assert texel_caches(device, kc) == (device.info.type == "cpu")
    assert texel_caches(device, kc, False) is False
    small = device.info.max_texel_elements
    device.info.max_texel_elements = kc.size // 4 - 1          # one uvec4 short of the cache
    try:
        assert texel_caches(device, kc) is False                # the default falls back to storage buffers
        with pytest.raises(DeviceLimitError, match="texel"):
            texel_caches(device, kc, True)
    finally:
        device.info.max_texel_elements = small
