#version 450
// @variant local1d           RESIDUAL=0 GLU=0
// @variant local1d_residual  RESIDUAL=1 GLU=0
// @variant local1d_swiglu    RESIDUAL=0 GLU=1
// Local1D (seed idea 10): a "dense" layer whose cost is linear in width. Unit i sees only a window
// of KERNEL consecutive inputs starting at start(i) = floor(i * (IN - KERNEL + 1) / UNITS):
//   o[n, i] = sum_k w[woff + i * KERNEL + k] * x[n, start(i) + k]   n < NROWS, i < UNITS, k < KERNEL
//   local1d_residual: o[n, i] += the same sum (the residual stream, in place: the Local1D model's down
//   layer adds into x without a dispatch of its own).
//   local1d_swiglu: o[n, i] = silu(g) * u, g and u the sums over the gate weights w and the up weights
//   wu (the Local1D model's gate and up: same windows, one pass over x, no gate/up buffers between).
// woff (a push constant) is the offset of this layer's weights in a buffer stacking layers [L, UNITS, KERNEL],
// so that one pipeline serves every layer (engine/weights.py).
// start(i) is exact integer arithmetic without int64: with M = IN - KERNEL + 1 = Q0 * UNITS + R0,
//   start(i) = i * Q0 + floor(i * R0 / UNITS), and i * R0 (< 2^64) is formed with umulExtended and
//   divided by shift-and-subtract when WIDE (the host sets it when (UNITS - 1) * R0 >= 2^32).
// Bindings: 0 o f32[NROWS, UNITS] (w; rw for local1d_residual), 1 x f32[NROWS, IN] (r), 2 w f32[UNITS, KERNEL] (r)
//           [, 3 wu f32[UNITS, KERNEL] (r): local1d_swiglu, at the same woff].
// Constants: WG, NROWS, IN, KERNEL, UNITS, Q0, R0, WIDE, RT.
// Grid: ceil(ceil(NROWS / RT) * UNITS / WG) groups (spilling into y). One invocation computes one unit for
// RT <= 8 consecutive rows, so each weight is loaded once for RT rows (a prefill chunk: 2x faster on
// lavapipe than one output per invocation); rows past NROWS repeat the last row and are not written.
// Each row's sum runs over k in order whatever RT is. Neighbouring invocations read overlapping windows.
// Twins: reference.local1d (residual: o + reference.local1d), reference.local1d_swiglu.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint NROWS = 1;
layout(constant_id = 2) const uint IN = 1;
layout(constant_id = 3) const uint KERNEL = 1;
layout(constant_id = 4) const uint UNITS = 1;
layout(constant_id = 5) const uint Q0 = 1;
layout(constant_id = 6) const uint R0 = 0;
layout(constant_id = 7) const uint WIDE = 0;
layout(constant_id = 8) const uint RT = 1;   // rows per invocation, 1..MAX_RT (engine/ops/local1d.py)
#define MAX_RT 8
layout(local_size_x_id = 0) in;
layout(push_constant) uniform Push { uint woff; } pc;
#if RESIDUAL
layout(binding = 0) buffer Out { float o[]; };
#else
layout(binding = 0) writeonly buffer Out { float o[]; };
#endif
layout(binding = 1) readonly buffer X { float x[]; };
layout(binding = 2) readonly buffer W { float w[]; };
#if GLU
layout(binding = 3) readonly buffer WU { float wu[]; };
#include "activation.glsl"
#endif

// floor((hi * 2^32 + lo) / d) for hi < d (the quotient fits 32 bits).
uint div_wide(uint hi, uint lo, uint d) {
    uint q = 0u, r = hi;
    for (int b = 31; b >= 0; --b) {
        uint carry = r >> 31;
        r = (r << 1) | ((lo >> uint(b)) & 1u);
        q <<= 1;
        if (carry != 0u || r >= d) { r -= d; q |= 1u; }   // wraps to the true r - d when carry is set
    }
    return q;
}

uint window_start(uint i) {
    uint frac;
    if (WIDE != 0u) {
        uint hi, lo;
        umulExtended(i, R0, hi, lo);
        frac = div_wide(hi, lo, UNITS);
    } else {
        frac = (i * R0) / UNITS;
    }
    return i * Q0 + frac;
}

void main() {
    uint e = flat_group_id() * WG + gl_LocalInvocationID.x;
    if (e >= (NROWS + RT - 1u) / RT * UNITS) return;
    uint nb = e / UNITS, i = e - nb * UNITS, n0 = nb * RT;
    uint s = window_start(i), ws = pc.woff + i * KERNEL;
    float acc[MAX_RT];
#if GLU
    float acc_u[MAX_RT];
#endif
    for (uint r = 0u; r < RT; ++r) {
        acc[r] = 0.0;
#if GLU
        acc_u[r] = 0.0;
#endif
    }
    for (uint k = 0u; k < KERNEL; ++k) {
        float wk = w[ws + k];
#if GLU
        float wuk = wu[ws + k];
#endif
        for (uint r = 0u; r < RT; ++r) {
            float xk = x[min(n0 + r, NROWS - 1u) * IN + s + k];
            acc[r] += wk * xk;
#if GLU
            acc_u[r] += wuk * xk;
#endif
        }
    }
    for (uint r = 0u; r < RT; ++r) {
        if (n0 + r >= NROWS) break;
        uint oi = (n0 + r) * UNITS + i;
#if GLU
        o[oi] = activation(0u, acc[r]) * acc_u[r];
#elif RESIDUAL
        o[oi] += acc[r];
#else
        o[oi] = acc[r];
#endif
    }
}
