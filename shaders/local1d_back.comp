#version 450
// Local1D backward (the forward: shaders/local1d.comp, start(i) = floor(i * M / UNITS), M = IN - KERNEL + 1):
//   back_x  dx[n, j] (+)= sum_{i: start(i) <= j < start(i) + KERNEL} w[i, j - start(i)] * dy[n, i]
//   back_w  dw[i, k] (+)= sum_n dy[n, i] * x[n, start(i) + k]
// woff (a push constant): the offset of this layer's matrix in a buffer stacking layers [L, UNITS, KERNEL]:
//   back_x reads w[woff + ...], back_w writes dw[woff + ...] (one pipeline for every layer).
// Deterministic: one invocation per output element, each summing in a fixed order (no atomics).
// back_x: the starts are nondecreasing in i, so the units covering j are the interval
//   i_lo = ceil(max(0, j - KERNEL + 1) * UNITS / M) <= i < i_hi = min(UNITS, ceil((j + 1) * UNITS / M)),
//   computed exactly (64-bit products by umulExtended when WIDE); start(i) then advances by
//   Q0 + (a carry of R0 / UNITS) per unit, with M = Q0 * UNITS + R0, without a division per term.
// @variant local1d_back_x      PART=0 ACC=0
// @variant local1d_back_x_acc  PART=0 ACC=1
// @variant local1d_back_w      PART=1 ACC=0
// @variant local1d_back_w_acc  PART=1 ACC=1
// Bindings: back_x: 0 dx f32[NROWS, IN] (w; rw with ACC), 1 dy f32[NROWS, UNITS] (r), 2 w f32[UNITS, KERNEL] (r).
//           back_w: 0 dw f32[UNITS, KERNEL] (w; rw with ACC), 1 dy f32[NROWS, UNITS] (r), 2 x f32[NROWS, IN] (r).
// Constants: WG, NROWS, IN, KERNEL, UNITS, Q0, R0, WIDE (the host sets it when (IN + 1) * (UNITS + 1) or
//            (UNITS - 1) * R0 reach 2^32: the 64-bit path).
// Grid: ceil(outputs / WG) groups (spilling into y).  Twins: reference.local1d.local1d_back_x / _back_w.
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
layout(local_size_x_id = 0) in;
layout(push_constant) uniform Push { uint woff; } pc;
#if ACC
layout(binding = 0) buffer Out { float o[]; };
#else
layout(binding = 0) writeonly buffer Out { float o[]; };
#endif
layout(binding = 1) readonly buffer DY { float dy[]; };
#if PART == 0
layout(binding = 2) readonly buffer W { float w[]; };
#else
layout(binding = 2) readonly buffer X { float x[]; };
#endif

const uint M = IN - KERNEL + 1u;

// floor((hi * 2^32 + lo) / d) for hi < d (the quotient fits 32 bits).
uint div_wide(uint hi, uint lo, uint d) {
    uint q = 0u, r = hi;
    for (int b = 31; b >= 0; --b) {
        uint carry = r >> 31;
        r = (r << 1) | ((lo >> uint(b)) & 1u);
        q <<= 1;
        if (carry != 0u || r >= d) { r -= d; q |= 1u; }
    }
    return q;
}

// min(cap, floor((a * b + add) / d)), exact for any 32-bit a, b, add.
uint muldiv(uint a, uint b, uint add, uint d, uint cap) {
    if (WIDE == 0u) return min(cap, (a * b + add) / d);
    uint hi, lo, carry;
    umulExtended(a, b, hi, lo);
    lo = uaddCarry(lo, add, carry);
    hi += carry;
    if (hi >= d) return cap;                              // the quotient is >= 2^32 > cap
    return min(cap, div_wide(hi, lo, d));
}

void main() {
    uint e = flat_group_id() * WG + gl_LocalInvocationID.x;
#if PART == 0
    if (e >= NROWS * IN) return;
    uint n = e / IN, j = e - n * IN;
    uint s = j + 1u >= KERNEL ? j + 1u - KERNEL : 0u;     // the lowest start that still covers j
    uint i_lo = s == 0u ? 0u : muldiv(s, UNITS, M - 1u, M, UNITS);
    uint i_hi = muldiv(j + 1u, UNITS, M - 1u, M, UNITS);  // ceil((j + 1) * UNITS / M): one past the last
    float acc = 0.0;
    if (i_lo < i_hi) {
        // start(i_lo) = floor(i_lo * M / UNITS) and its remainder, then step by Q0 + carry
        uint hi, lo;
        umulExtended(i_lo, R0, hi, lo);
        uint f = WIDE != 0u ? div_wide(hi, lo, UNITS) : (i_lo * R0) / UNITS;
        uint rem = lo - f * UNITS;                        // (i_lo * R0) mod UNITS, exact mod 2^32
        uint start = i_lo * Q0 + f;
        for (uint i = i_lo; i < i_hi; ++i) {
            acc += w[pc.woff + i * KERNEL + (j - start)] * dy[n * UNITS + i];
            start += Q0;
            if (rem >= UNITS - R0) { rem -= UNITS - R0; start += 1u; } else { rem += R0; }
        }
    }
#else
    if (e >= UNITS * KERNEL) return;
    uint i = e / KERNEL, k = e - i * KERNEL;
    uint hi, lo;
    umulExtended(i, R0, hi, lo);
    uint f = WIDE != 0u ? div_wide(hi, lo, UNITS) : (i * R0) / UNITS;
    uint col = i * Q0 + f + k;
    float acc = 0.0;
    for (uint n = 0u; n < NROWS; ++n) acc += dy[n * UNITS + i] * x[n * IN + col];
#endif
#if PART == 0
    uint oe = e;
#else
    uint oe = pc.woff + e;                               // this layer's dw in the stack
#endif
#if ACC
    o[oe] += acc;
#else
    o[oe] = acc;
#endif
}
