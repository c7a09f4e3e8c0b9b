"""engine/rng.py (Philox-2x32-10) against Random123's answers, shaders/include/rng.glsl against engine/rng.py
bit for bit, and the statistics a dropout mask relies on."""
import numpy as np
import pytest

from engine import params, rng
from engine.errors import VkharpError
from engine.ops.elementwise import rand_uniform
from engine.reference import elementwise as ref

# Random123 kat_vectors: (rounds, ctr0, ctr1, key) -> (out0, out1).
KAT = [
    (7, 0x00000000, 0x00000000, 0x00000000, 0x257A3673, 0xCD26BE2A),
    (7, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xAB302C4D, 0x3DC9D239),
    (7, 0x243F6A88, 0x85A308D3, 0x13198A2E, 0xBEDBBE6B, 0xE4C770B3),
    (10, 0x00000000, 0x00000000, 0x00000000, 0xFF1DAE59, 0x6CD10DF2),
    (10, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0x2C3F628B, 0xAB4FD7AD),
    (10, 0x243F6A88, 0x85A308D3, 0x13198A2E, 0xDD7CE038, 0xF62A4C12),
]


@pytest.mark.parametrize("rounds,c0,c1,key,want0,want1", KAT)
def test_philox_known_answers(rounds, c0, c1, key, want0, want1):
    x0, x1 = rng.philox2x32(c0, c1, key, rounds)
    assert (int(x0), int(x1)) == (want0, want1)


# A grid of (seed, position, dim): 2**20 draws.
def _grid(seed=12345, pos0=0, n_pos=1024, n_dim=1024):
    return rng.uniform(seed, np.arange(pos0, pos0 + n_pos, dtype=np.uint64)[:, None] % 2**32,
                       np.arange(n_dim)[None, :])


def test_uniform_is_24_bit_in_unit_interval():
    u = _grid()
    assert u.dtype == np.float32 and u.min() >= 0.0 and u.max() < 1.0
    k = u.astype(np.float64) * 2**24
    np.testing.assert_array_equal(k, np.floor(k))  # exactly k * 2^-24
    # Every one of the 24 bits is set about half the time (5 sigma of a binomial over 2^20 draws).
    bits = (k.astype(np.uint32)[..., None] >> np.arange(24, dtype=np.uint32)) & 1
    assert np.all(np.abs(bits.mean(axis=(0, 1)) - 0.5) < 5 * 0.5 / np.sqrt(k.size))


def test_uniformity_mean_and_chi_square():
    u = _grid().ravel()
    n = u.size
    assert abs(u.mean() - 0.5) < 5 * np.sqrt(1 / 12 / n)
    counts = np.bincount((u * 256).astype(np.int64), minlength=256)
    chi2 = float(((counts - n / 256) ** 2 / (n / 256)).sum())
    # 255 degrees of freedom: mean 255, sd sqrt(510) ~ 22.6; outside 6 sd either way is a defect
    # (too small means too regular, as a bare counter would be).
    assert 255 - 6 * 22.6 < chi2 < 255 + 6 * 22.6, chi2


@pytest.mark.parametrize("axis", ["dim", "position", "seed"])
def test_no_correlation_between_neighbours(axis):
    u = _grid(n_pos=512, n_dim=512).astype(np.float64)
    if axis == "dim":
        a, b = u[:, :-1], u[:, 1:]
    elif axis == "position":
        a, b = u[:-1], u[1:]
    else:
        a, b = u, _grid(seed=12346, n_pos=512, n_dim=512).astype(np.float64)
    r = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert abs(r) < 6 / np.sqrt(a.size), r
    # Also in the low bits, where weak hashes show lattice structure.
    la, lb = (a * 2**24).astype(np.int64) & 0xFF, (b * 2**24).astype(np.int64) & 0xFF
    assert abs(np.corrcoef(la.ravel(), lb.ravel())[0, 1]) < 6 / np.sqrt(a.size)


def test_dropout_mask_rate_and_determinism():
    m = rng.dropout_mask(7, 100, 64, 1000, 0.2)
    assert m.shape == (64, 1000)
    assert abs(m.mean() - 0.2) < 5 * np.sqrt(0.2 * 0.8 / m.size)
    np.testing.assert_array_equal(m, rng.dropout_mask(7, 100, 64, 1000, 0.2))
    # A chunk starting later sees the same mask rows: the mask depends on absolute positions only.
    np.testing.assert_array_equal(m[10:], rng.dropout_mask(7, 110, 54, 1000, 0.2))
    assert (m != rng.dropout_mask(8, 100, 64, 1000, 0.2)).mean() > 0.2  # another seed, another mask


@pytest.mark.parametrize("wg", [32, 64, 256])
@pytest.mark.parametrize("rows,dim", [(1, 7), (37, 193), (257, 61)])
def test_shader_matches_numpy_bit_for_bit(device, rows, dim, wg):
    out = device.buffer((rows, dim))
    step = device.buffer(params.STEP_WORDS, np.uint32, name="step")
    rec = device.recorder()
    rec.upload(step)
    rand_uniform(rec, out, step, wg=wg)
    prog = rec.finish()
    # Replays of one program with new step values; the last position range wraps past 2^32.
    for seed, pos in [(0, 0), (1, 17), (0xFFFFFFFF, 1 << 31), (123456789, 2**32 - rows // 2 - 1)]:
        params.write_step(step, seed=seed, pos=pos)
        prog.run()
        got = out.read().reshape(rows, dim)
        want = ref.rand_uniform((rows, dim), params.pack_step(seed=seed, pos=pos))
        np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def test_rand_uniform_needs_a_step_buffer(device):
    rec = device.recorder()
    with pytest.raises(VkharpError, match="step"):
        rand_uniform(rec, device.buffer((2, 8)), device.buffer(3, np.uint32))
