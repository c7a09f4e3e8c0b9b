"""shaders/activation.comp (SwiGLU, GeGLU, SiLU, GELU tanh/erf) against engine/reference/activation.py."""
import numpy as np
import pytest
import torch

from engine.errors import VkharpError
from engine.ops import activation as ops
from engine.reference import activation as ref
from util import max_rel_err, rand

# Relative to the largest |value|: outputs of that size come from small exp arguments z, where
# float32 exp/divide are a few ulp: 1e-6. (Measured on lavapipe: <= 2e-7.)
TOL = 1e-6
# Element by element, in the negative tail: the exp argument z itself carries float32 rounding of
# ~3 eps |z| (|z| <= 80 before the result is flushed to 0), i.e. up to ~1.5e-5 relative, plus
# Vulkan's exp allowance of 3 + 2|z| ulp (~1e-5): 1e-4. The erfc fit adds < 1.2e-7.
# (Measured on lavapipe for x in [-30, 30]: silu 1.8e-6, gelu tanh 1.3e-5, gelu erf 2.0e-5.)
TAIL_TOL = 1e-4

GATED = {"swiglu": (ops.swiglu, ref.swiglu, {}),
         "geglu": (ops.geglu, ref.geglu, {}),
         "geglu_erf": (ops.geglu, ref.geglu, {"approximate": "none"})}
PLAIN = {"silu": (ops.silu, ref.silu, {}),
         "gelu": (ops.gelu, ref.gelu, {}),
         "gelu_erf": (ops.gelu, ref.gelu, {"approximate": "none"})}


def _run(device, fn, out_shape, *inputs, **kw):
    bufs = [device.buffer(x) for x in inputs]
    out = device.buffer(out_shape)
    rec = device.recorder()
    fn(rec, out, *bufs, **kw)
    rec.finish().run()
    return out.read().reshape(inputs[0].shape)


@pytest.mark.parametrize("name", list(GATED))
@pytest.mark.parametrize("shape", [(1, 7), (3, 1001), (2, 4099)])
@pytest.mark.parametrize("wg", [32, 64, 256])
def test_gated(device, rng, name, shape, wg):
    launch, twin, kw = GATED[name]
    gate, up = rand(rng, *shape, scale=3.0), rand(rng, *shape)
    got = _run(device, launch, shape, gate, up, wg=wg, **kw)
    assert max_rel_err(got, twin(gate, up, **kw)) < TOL


@pytest.mark.parametrize("name", list(PLAIN))
@pytest.mark.parametrize("wg", [64, 128])
def test_plain_over_the_whole_range(device, name, wg):
    """Every value from deep negative tail to large positive, element by element; no inf/NaN."""
    launch, twin, kw = PLAIN[name]
    x = np.concatenate([np.linspace(-30, 30, 120001, dtype=np.float32),
                        np.array([-3e38, -1e30, -1e10, -1e4, -100, -88, -80, -0.0, 0.0, 80, 100, 1e4, 1e10,
                                  1e30, 3e38], np.float32)])
    got = _run(device, launch, (x.size,), x, wg=wg, **kw).astype(np.float64)
    want = twin(x, **kw).astype(np.float64)
    assert np.all(np.isfinite(got)), x[~np.isfinite(got)]
    assert max_rel_err(got, want) < TOL
    big = np.abs(want) > 1e-30
    assert np.max(np.abs(got - want)[big] / np.abs(want[big])) < TAIL_TOL
    assert np.max(np.abs(got[~big])) <= 1e-30  # the far tail is (nearly) zero, never garbage


def test_in_place(device, rng):
    """out may be an input: gate = gelu(gate) * up, then up = silu(up), dependent, in one program."""
    gate, up = rand(rng, 5, 333, scale=3.0), rand(rng, 5, 333)
    gb, ub = device.buffer(gate), device.buffer(up)
    rec = device.recorder()
    ops.geglu(rec, gb, gb, ub)
    ops.silu(rec, ub, ub)
    rec.finish().run()
    assert max_rel_err(gb.read().reshape(5, 333), ref.geglu(gate, up)) < TOL
    assert max_rel_err(ub.read().reshape(5, 333), ref.silu(up)) < TOL


@pytest.mark.parametrize("approximate", ["tanh", "none"])
def test_twins_are_torchs_definitions(approximate):
    """The twins are HF's activations (gelu_pytorch_tanh = torch gelu tanh; exact gelu; silu),
    rewritten only to stay accurate in the tail: compared in float64 where torch's form is accurate."""
    x = torch.linspace(-8, 8, 20001, dtype=torch.float64)
    want = torch.nn.functional.gelu(x, approximate=approximate).numpy()
    assert np.max(np.abs(ref.gelu_f64(x.numpy(), approximate) - want)) < 1e-12
    assert np.max(np.abs(ref.silu_f64(x.numpy()) - torch.nn.functional.silu(x).numpy())) < 1e-12


def test_bad_inputs(device):
    rec = device.recorder()
    with pytest.raises(VkharpError, match="sizes do not agree"):
        ops.swiglu(rec, device.buffer(8), device.buffer(8), device.buffer(7))
    with pytest.raises(VkharpError, match="approximate must be one of"):
        ops.geglu(rec, device.buffer(8), device.buffer(8), device.buffer(8), approximate="erf")
    with pytest.raises(VkharpError, match="must be f32"):
        ops.gelu(rec, device.buffer(8), device.buffer(8, np.uint32))
