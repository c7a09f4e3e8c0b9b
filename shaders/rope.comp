#version 450
// @variant rope_half         INTERLEAVED=0
// @variant rope_interleaved  INTERLEAVED=1
// @variant rope_half_append              INTERLEAVED=0 APPEND=1
// @variant rope_interleaved_append       INTERLEAVED=1 APPEND=1
// @variant rope_half_append_dual         INTERLEAVED=0 APPEND=1 TWO_CACHES=1
// @variant rope_interleaved_append_dual  INTERLEAVED=1 APPEND=1 TWO_CACHES=1
// @variant rope_half_inverse         INTERLEAVED=0 INVERSE=1
// @variant rope_interleaved_inverse  INTERLEAVED=1 INVERSE=1
// Rotary position embedding, in place on q and k in one dispatch. Token t of the chunk is at position
// p = P_POS + t; pair j (j < ROT/2) turns by the angle a = float(p) * inv_freq[j] (one f32 product,
// as HF computes it):
//   x0' = x0 cos a - x1 sin a,   x1' = x1 cos a + x0 sin a
// with (x0, x1) = (x[j], x[j + ROT/2]) for rope_half (HF rotate_half: Llama, Qwen, Gemma, NeoX) and
// (x[2j], x[2j+1]) for rope_interleaved (GPT-J, GGUF llama). Dims >= ROT (partial rotary) are kept.
// Bindings: 0 q f32[N,HQ,D] (rw), 1 k f32[N,HK,D] (rw), 2 inv_freq f32[ROT/2] (r),
//           3 step u32[STEP_WORDS] (r: P_POS, P_NTOK). Rows t >= P_NTOK are left as they are.
// sin/cos: shaders/include/sincos.glsl (GLSL's are not accurate at large angles).
// QSCALE multiplies q's rotated dims (longrope's attention factor, squared: HF scales cos and sin,
//   so both q's and k's rotated dims; scaling q alone by its square gives the same scores, and leaves
//   the cached keys plain). 1.0 elsewhere, which changes nothing.
// Grid: one invocation per (row, pair): ceil(N*(HQ+HK)*ROT/2 / WG) groups.  Twin: reference.rope.
// APPEND = 1 (`_append`): the KV append fused in. Bindings 4 v f32[N,HK,D] (r), 5 k_cache, 6 v_cache
//   f32[L,HK,CTX,D] (w) [, 7 k_cache2, 8 v_cache2 (w): TWO_CACHES, HARP's two streams, row 1 there];
//   push kv_layer picks the cache layer. Each key row's pair lanes store the rotated key at cache row
//   P_POS + t (< CTX), and between them the key's dims >= ROT and the whole value row.
//   Twin: reference.rope, then reference.kv_append (kv_append_dual).
// INVERSE = 1 (`_inverse`, the backward: gradients dq, dk in place of q, k): rotation by -a, then q's
//   rotated dims times QSCALE. The forward's map is QSCALE * R(a), whose transpose is QSCALE * R(-a).
//   Twin: reference.rope_back.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "params.glsl"
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint N = 1;     // tokens in the chunk (rows), fixed at record time
layout(constant_id = 2) const uint HQ = 1;    // query heads
layout(constant_id = 3) const uint HK = 1;    // key heads
layout(constant_id = 4) const uint D = 2;     // head dim
layout(constant_id = 5) const uint ROT = 2;   // rotated dims (even, <= D)
layout(constant_id = 6) const uint DUAL = 0;  // 1: every row is at position P_POS (HARP's two streams)
layout(constant_id = 7) const float QSCALE = 1.0;  // multiplies q's rotated dims (longrope attention factor^2)
layout(local_size_x_id = 0) in;
#ifndef APPEND
  #define APPEND 0
#endif
#ifndef TWO_CACHES
  #define TWO_CACHES 0
#endif
#ifndef INVERSE
  #define INVERSE 0
#endif
#if APPEND
layout(constant_id = 8) const uint CTX = 1;   // cache positions per layer (after QSCALE: ids stay contiguous)
layout(push_constant) uniform Push { uint layer; uint kv_layer; } pc;
#else
layout(push_constant) uniform Push { uint layer; } pc;   // inv_freq stacks layers: [L, ROT/2]
#endif
layout(binding = 0) buffer Q { float q[]; };
layout(binding = 1) buffer K { float k[]; };
layout(binding = 2) readonly buffer F { float inv_freq[]; };
layout(binding = 3) readonly buffer Step { uint step[]; };
#if APPEND
layout(binding = 4) readonly buffer V { float v[]; };
layout(binding = 5) writeonly buffer KC { float kc[]; };
layout(binding = 6) writeonly buffer VC { float vc[]; };
  #if TWO_CACHES
layout(binding = 7) writeonly buffer KC2 { float kc2[]; };
layout(binding = 8) writeonly buffer VC2 { float vc2[]; };
  #endif

void store_k(uint t, uint i, float x) {
  #if TWO_CACHES
    if (t == 1u) { kc2[i] = x; return; }
  #endif
    kc[i] = x;
}

void store_v(uint t, uint i, float x) {
  #if TWO_CACHES
    if (t == 1u) { vc2[i] = x; return; }
  #endif
    vc[i] = x;
}
#endif

#include "sincos.glsl"

void main() {
    const uint R2 = ROT / 2u;
    uint i = flat_group_id() * WG + gl_LocalInvocationID.x;
    if (i >= N * (HQ + HK) * R2) return;
    uint pair = i % R2, row = i / R2;            // rows: N*HQ query rows, then N*HK key rows
    bool is_q = row < N * HQ;
    uint t = is_q ? row / HQ : (row - N * HQ) / HK;
    if (t >= step[P_NTOK]) return;
    precise float a = float(step[P_POS] + (DUAL != 0u ? 0u : t)) * inv_freq[pc.layer * (ROT / 2u) + pair];
    vec2 sc = sin_cos(a);
#if INVERSE
    sc.x = -sc.x;      // sin(-a) = -sin(a), cos(-a) = cos(a)
#endif
#if INTERLEAVED
    uint i0 = 2u * pair, i1 = 2u * pair + 1u;
#else
    uint i0 = pair, i1 = pair + R2;
#endif
    uint base = (is_q ? row : row - N * HQ) * D;
    if (is_q) {
        float x0 = q[base + i0], x1 = q[base + i1];
        q[base + i0] = (x0 * sc.y - x1 * sc.x) * QSCALE;
        q[base + i1] = (x1 * sc.y + x0 * sc.x) * QSCALE;
    } else {
        float x0 = k[base + i0], x1 = k[base + i1];
        float y0 = x0 * sc.y - x1 * sc.x, y1 = x1 * sc.y + x0 * sc.x;
        k[base + i0] = y0;
        k[base + i1] = y1;
#if APPEND
        uint p = step[P_POS] + (DUAL != 0u ? 0u : t);
        if (p < CTX) {
            uint h = (row - N * HQ) % HK;
            uint dst = ((pc.kv_layer * HK + h) * CTX + p) * D;   // head-major [L, HK, CTX, D]
            store_k(t, dst + i0, y0);
            store_k(t, dst + i1, y1);
            for (uint d = ROT + pair; d < D; d += R2) store_k(t, dst + d, k[base + d]);   // unrotated dims
            for (uint d = pair; d < D; d += R2) store_v(t, dst + d, v[base + d]);
        }
#endif
    }
}
