#version 450
// @variant matmul_t_f32   WFMT=0
// @variant matmul_t_f32_odd  WFMT=0 ODD_COLS=1
// @variant matmul_t_f16   WFMT=1
// @variant matmul_t_f16_odd  WFMT=1 ODD_COLS=1
// @variant matmul_t_q8_0  WFMT=2
// @variant matmul_t_q4_0  WFMT=3
// @variant matmul_t_q4_1  WFMT=4
// @variant matmul_t_q5_0  WFMT=5
// @variant matmul_t_q5_1  WFMT=6
// @variant matmul_t_q4_k  WFMT=7
// @variant matmul_t_q5_k  WFMT=8
// @variant matmul_t_q6_k  WFMT=9
// @variant matmul_t_iq4_nl  WFMT=10
// @variant matmul_t_iq4_xs  WFMT=11
// @variant matmul_t_q2_k  WFMT=12
// @variant matmul_t_q3_k  WFMT=13
// matmul_t: the backward of x·Wᵀ through a frozen weight, for NR rows of one weight part:
//   dx[dxo + n*COLS + c] (+)= sum_{r < NR} dy[dyo + n*DYS + DY0 + r] * W[wrow + r, c]   n < NTOK, c < COLS
// (wrow: buffer row of the first summed row in the part, layer offset included; dxo, dyo: element
// offsets of dx and dy, e.g. a layer's slice of layer-stacked activations). Twin:
// reference.matmul_t (the same decoded weights, float64).
// Bindings: 0 dx f32[NTOK, COLS] (rw: ACC=1 adds to it), 1 wq quants of the part (r),
//   [2 ws scales of the part (r), q formats], then dy f32[NTOK, DYS] (r).
// Constants: WG (column lanes), COLS, NTOK, TN (tokens per group, <= 8), NR, DYS (dy's row
//   stride), DY0 (dy's column of the first summed row), ACC (0: dx =, 1: dx +=).  Push: wrow, dxo, dyo.
// Grid: ceil(ceil(COLS / 32) / WG) * ceil(NTOK / TN) groups, flattened over x and y.
//
// Work split: lane l of group g owns the 32 columns of block (g % NCG) * WG + l and tokens
// [t*TN, t*TN + TN) of tile t = g / NCG: an output tile no other lane writes (no atomics, no
// ordering between groups). Each lane walks all NR rows in order (deterministic sums): per row it
// decodes its block's 32 weights once -- 16-byte loads and one scale load for f32, f16, q8_0,
// q4_0, q4_1; the 5-bit, k-quant (q2_k .. q6_k) and iq4 block's words and scales loaded once, then weight_at's
// arithmetic (weights.glsl, the same roundings); weight_at itself for f32/f16 rows that are not
// whole 32-column blocks (`_odd`) -- and adds them times TN values of dy into 32 x TN
// accumulators. All lanes of a group walk the same rows, so the dy values are the same for every
// lane (uniform loads). Why: on lavapipe a load whose address differs per lane costs a loop over
// the 8 lanes, so the kernel's cost is its lane-dependent loads per multiply-add: one 32-weight
// decode serves TN tokens. Several weight parts are several dispatches, each adding to dx
// (ACC = 1 after the first), ordered by the recorder's barriers (dx is rw).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(constant_id = 0) const uint WG = 8;
layout(constant_id = 1) const uint COLS = 32;
layout(constant_id = 2) const uint NTOK = 1;
layout(constant_id = 3) const uint TN = 1;
layout(constant_id = 4) const uint NR = 1;
layout(constant_id = 5) const uint DYS = 1;
layout(constant_id = 6) const uint DY0 = 0;
layout(constant_id = 7) const uint ACC = 0;
layout(local_size_x_id = 0) in;
layout(push_constant) uniform Push { uint wrow; uint dxo; uint dyo; } pc;

// VEC4: whole 16-byte words per block (the common formats, rows of whole blocks)
#if WFMT <= 4 && !defined(ODD_COLS)
  #define VEC4 1
#else
  #define VEC4 0
#endif
layout(binding = 0) buffer DX { float dx[]; };
#if VEC4
layout(binding = 1) readonly buffer WQ { uvec4 wq4[]; };
#else
layout(binding = 1) readonly buffer WQ { uint wq[]; };
#endif
#if WFMT >= 2
layout(binding = 2) readonly buffer WS { uint ws[]; };
layout(binding = 3) readonly buffer DY { float dy[]; };
#else
layout(binding = 2) readonly buffer DY { float dy[]; };
#endif
#ifndef ODD_COLS
  #define WEIGHTS_NO_SCALAR
#endif
#include "weights.glsl"

#define MAX_TN 8u

// Register arrays are indexed only by their own loop's variable, with the array's length as the trip
// count, so that Mesa unrolls the loops and keeps them in registers (an array indexed otherwise
// becomes scratch memory, every access a loop over the lanes on lavapipe).
// The 32 weights of block b of buffer row `row`, as w[i] = weights 4i .. 4i+3.
void decode_block(uint row, uint b, inout vec4 w[8]) {
#if VEC4
    const uint RW4 = WROW_WORDS / 4u;   // 16-byte words per row
  #if WFMT == FMT_F32
    for (uint i = 0u; i < 8u; i++) w[i] = uintBitsToFloat(wq4[row * RW4 + b * 8u + i]);
  #elif WFMT == FMT_F16
    for (uint i = 0u; i < 8u; i++) {
        uvec4 u = wq4[row * RW4 + b * 4u + i / 2u];   // the pair's one load (merged)
        w[i] = (i & 1u) == 0u ? vec4(unpackHalf2x16(u.x), unpackHalf2x16(u.y))
                              : vec4(unpackHalf2x16(u.z), unpackHalf2x16(u.w));
    }
  #elif WFMT == FMT_Q8_0
    uint blk = row * (COLS / 32u) + b;
    uint sw = ws[blk >> 1];
    float d = unpackHalf2x16((blk & 1u) == 0u ? sw : sw >> 16).x * Q8_TOP_SCALE;   // q8_top: q * 2^24, exact
    for (uint i = 0u; i < 8u; i++) w[i] = q8_top(pick4(wq4[row * RW4 + b * 2u + i / 4u], i & 3u)) * d;
  #else
    uint blk = row * (COLS / 32u) + b;
    #if WFMT == FMT_Q4_1
    vec2 dm = unpackHalf2x16(ws[blk]);
    #else
    uint sw = ws[blk >> 1];
    vec2 dm = vec2(unpackHalf2x16((blk & 1u) == 0u ? sw : sw >> 16).x, 0.0);
    dm.y = -8.0 * dm.x;   // d*(q - 8) = d*q - 8d: d*q exact (11 x 4 bits), one rounding as the twin's
    #endif
    uvec4 u = wq4[row * RW4 + b];
    for (uint i = 0u; i < 8u; i++) {
        uvec4 q = (uvec4(pick4(u, i & 3u)) >> (uvec4(0u, 8u, 16u, 24u) + (i >= 4u ? 4u : 0u))) & 15u;
        precise vec4 v = dm.x * vec4(q) + dm.y;   // one rounding per weight, as engine.quant.dequantize
        w[i] = v;
    }
  #endif
#elif WFMT_IQ4
    // iq4 (engine/iquant.py): the block's 4 words and its scale loaded once, then weight_at's product
    uint rb = row * WROW_WORDS + b * 4u;
    uvec4 lo = uvec4(wq[rb], wq[rb + 1u], wq[rb + 2u], wq[rb + 3u]);
  #if WFMT == FMT_IQ4_NL
    uint f = row * (COLS / 32u) + b;
    float d = unpackHalf2x16((f & 1u) == 0u ? ws[f >> 1] : ws[f >> 1] >> 16).x;
  #else
    uint sbi = (row * (COLS / 256u) + (b >> 3)) * 2u;
    float d = iq4xs_scale(uvec2(ws[sbi], ws[sbi + 1u]), b & 7u);
  #endif
    for (uint i = 0u; i < 8u; i++) {
        uint wi = i & 3u;
        precise vec4 v = d * (i >= 4u ? iq4_hi(pick4(lo, wi)) : iq4_lo(pick4(lo, wi)));
        w[i] = v;
    }
#elif WFMT_K23
    // q2_k, q3_k (engine/kquant23.py): the block's words and scales loaded once, then weight_at's
    // arithmetic for its 32 weights (the same `precise` roundings as gguf's numpy decoder)
    const uint NBR = COLS / 32u;
    uint rb = row * WROW_WORDS, S = row * (COLS / 256u) + (b >> 3);
    uint l0 = wq[rb + b * 2u], l1 = wq[rb + b * 2u + 1u];
  #if WFMT == FMT_Q2_K
    vec4 s = q2k_scales(wq[rb + NBR * 2u + (b >> 3) * 4u + ((b & 7u) >> 1)], 16u * (b & 1u), unpackHalf2x16(ws[S]));
  #else
    uint h = wq[rb + NBR * 2u + b], h0 = (7u * S) >> 1;
    uvec4 hd = q3k_head(ws[h0], ws[h0 + 1u], ws[h0 + 2u], ws[h0 + 3u], (S & 1u) != 0u);
    float dl0 = q3k_scale(hd, 2u * (b & 7u)), dl1 = q3k_scale(hd, 2u * (b & 7u) + 1u);
  #endif
    for (uint i = 0u; i < 8u; i++) {
        // weights 4i + k: field i % 4 of byte k of the block's word i / 4 (q3_k: high bit i of byte k)
        uvec4 q = (uvec4(i >= 4u ? l1 : l0) >> (uvec4(0u, 8u, 16u, 24u) + 2u * (i & 3u))) & 3u;
  #if WFMT == FMT_Q2_K
        precise vec4 v = (i >= 4u ? s.z : s.x) * vec4(q) - (i >= 4u ? s.w : s.y);
  #else
        q |= ((uvec4(h) >> (uvec4(0u, 8u, 16u, 24u) + i)) & 1u) << 2;
        precise vec4 v = (i >= 4u ? dl1 : dl0) * (vec4(q) - 4.0);
  #endif
        w[i] = v;
    }
#elif WFMT >= FMT_Q5_0
    // 5-bit and k-quants (engine/kquant.py): the block's words loaded once, then weight_at's
    // arithmetic for its 32 weights (the same `precise` roundings as gguf's numpy decoder)
    const uint NBR = COLS / 32u;
    uint rb = row * WROW_WORDS;
    uvec4 lo = uvec4(wq[rb + b * 4u], wq[rb + b * 4u + 1u], wq[rb + b * 4u + 2u], wq[rb + b * 4u + 3u]);
  #if WFMT == FMT_Q6_K
    uint h0 = wq[rb + NBR * 4u + b * 2u], h1 = wq[rb + NBR * 4u + b * 2u + 1u];
    uint sb = row * (COLS / 256u) + (b >> 3);
    float dd = unpackHalf2x16((sb & 1u) == 0u ? ws[sb >> 1] : ws[sb >> 1] >> 16).x;
    uint sw = wq[rb + NBR * 6u + (b >> 3) * 4u + ((b & 7u) >> 1)], i16 = ((b & 7u) * 2u) & 3u;
    precise float dsc0 = dd * float(int(sw << (24u - 8u * i16)) >> 24);          // weights 0..15
    precise float dsc1 = dd * float(int(sw << (24u - 8u * (i16 + 1u))) >> 24);   // weights 16..31
  #elif WFMT != FMT_Q4_K
    uint h = wq[rb + NBR * 4u + b];
  #endif
  #if WFMT == FMT_Q5_0
    uint f = row * NBR + b;
    float d = unpackHalf2x16((f & 1u) == 0u ? ws[f >> 1] : ws[f >> 1] >> 16).x;
  #elif WFMT == FMT_Q5_1
    vec2 dm = unpackHalf2x16(ws[row * NBR + b]);
  #elif WFMT != FMT_Q6_K
    uint sbi = (row * (COLS / 256u) + (b >> 3)) * 4u;
    vec2 dm = k_scale_min(uvec4(ws[sbi], ws[sbi + 1u], ws[sbi + 2u], ws[sbi + 3u]), b & 3u, (b >> 2) & 1u);
  #endif
    for (uint i = 0u; i < 8u; i++) {
        // weights j = 4i + k: nibble of byte k of word i % 4 (low for j < 16, high after)
        uint wi = i & 3u, hi = i >= 4u ? 4u : 0u;
        uvec4 sh = uvec4(0u, 8u, 16u, 24u) + hi;
        uvec4 q = (uvec4(pick4(lo, wi)) >> sh) & 15u;
  #if WFMT == FMT_Q6_K
        q |= ((uvec4((wi >> 1) == 0u ? h0 : h1) >> (sh + 2u * (wi & 1u))) & 3u) << 4;
        precise vec4 v = (i >= 4u ? dsc1 : dsc0) * (vec4(q) - 32.0);
  #else
    #if WFMT != FMT_Q4_K
        q |= ((uvec4(h) >> (sh + wi)) & 1u) << 4;
    #endif
    #if WFMT == FMT_Q5_0
        precise vec4 v = d * (vec4(q) - 16.0);
    #else
        precise vec4 v = dm.x * vec4(q) + dm.y;
    #endif
  #endif
        w[i] = v;
    }
#else
    for (uint i = 0u; i < 8u; i++) {   // f32/f16 rows of any width
        uint c = b * 32u + 4u * i;
        w[i] = vec4(c < COLS ? weight_at(row, c) : 0.0, c + 1u < COLS ? weight_at(row, c + 1u) : 0.0,
                    c + 2u < COLS ? weight_at(row, c + 2u) : 0.0, c + 3u < COLS ? weight_at(row, c + 3u) : 0.0);
    }
#endif
}

void main() {
    const uint NB = (COLS + 31u) / 32u, NCG = (NB + WG - 1u) / WG;
    uint g = flat_group_id(), lane = gl_LocalInvocationID.x;
    uint b = (g % NCG) * WG + lane, n0 = (g / NCG) * TN;
    uint dyb[MAX_TN];
    for (uint t = 0u; t < MAX_TN; t++) dyb[t] = pc.dyo + min(n0 + t, NTOK - 1u) * DYS + DY0;   // tokens past NTOK: not stored
    vec4 acc[MAX_TN][8];
    for (uint t = 0u; t < MAX_TN; t++) {
        for (uint i = 0u; i < 8u; i++) acc[t][i] = vec4(0.0);
    }
    if (b < NB) {
        for (uint r = 0u; r < NR; r++) {
            vec4 w[8];
            decode_block(pc.wrow + r, b, w);
            for (uint t = 0u; t < MAX_TN; t++) {
                if (t < TN) {
                    float d = dy[dyb[t] + r];
                    for (uint i = 0u; i < 8u; i++) acc[t][i] = fma(vec4(d), w[i], acc[t][i]);
                }
            }
        }
    }
    for (uint t = 0u; t < MAX_TN; t++) {
        for (uint i = 0u; i < 8u; i++) {
            uint n = n0 + t, c = b * 32u + 4u * i;
            if (t < TN && n < NTOK && b < NB) {
                vec4 a = acc[t][i];
                for (uint k = 0u; k < 4u; k++) {
                    if (c + k < COLS) {
                        uint o = pc.dxo + n * COLS + c + k;
                        float v = k == 0u ? a.x : k == 1u ? a.y : k == 2u ? a.z : a.w;
                        dx[o] = ACC != 0u ? dx[o] + v : v;
                    }
                }
            }
        }
    }
}
