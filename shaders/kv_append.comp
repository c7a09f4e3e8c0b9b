#version 450
// @variant kv_append
// @variant kv_append_dual  DUAL=1
// KV-cache append: cache row P_POS + t <- chunk row t, for t < P_NTOK (and P_POS + t < CTX: a bad
// position writes nothing rather than out of bounds). Rollback needs no shader: a smaller P_POS next
// time simply overwrites.
//   k_cache[h, P_POS + t, :] = k[t, h, :];  v_cache[h, P_POS + t, :] = v[t, h, :]
// Cache layout (engine/kv_cache.py): head-major [L, HK, CTX, D] (layers stacked; pc.layer picks one), K and V in separate buffers,
// f32 (KV16 = 0) or f16 pairs (KV16 = 1: u32 word w of a row holds dims 2w (low half) and 2w + 1,
// packHalf2x16's rounding; one invocation per pair).
// Bindings: 0 k_cache [HK,CTX,D] (w), 1 v_cache [HK,CTX,D] (w), 2 k f32[N,HK,D] (r),
//           3 v f32[N,HK,D] (r), 4 step u32[STEP_WORDS] (r: P_POS, P_NTOK).
// The caches are `store` buffers: no later dispatch of the same program may read what this writes.
// kv_append_dual (HARP cached mode): N = 2 streams at the same position P_POS; row 1 goes to the
//   caches at bindings 5/6.
// Grid: one invocation per chunk element (pair under KV16): ceil(N*HK*D / WG) (/ 2) groups.  Twin: reference.kv_append.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "params.glsl"
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint N = 1;     // tokens in the chunk
layout(constant_id = 2) const uint HK = 1;    // key/value heads
layout(constant_id = 3) const uint D = 1;     // head dim
layout(constant_id = 4) const uint CTX = 1;   // cache positions
layout(constant_id = 5) const uint KV16 = 0;  // 1: f16 pairs
layout(local_size_x_id = 0) in;
layout(push_constant) uniform Push { uint layer; } pc;   // caches stack layers: [L, HK, CTX, D]
layout(binding = 0) writeonly buffer KC { uint kc[]; };
layout(binding = 1) writeonly buffer VC { uint vc[]; };
layout(binding = 2) readonly buffer K { float k[]; };
layout(binding = 3) readonly buffer V { float v[]; };
layout(binding = 4) readonly buffer Step { uint step[]; };
#ifndef DUAL
#define DUAL 0
#endif
#if DUAL
layout(binding = 5) writeonly buffer KC2 { uint kc2[]; };
layout(binding = 6) writeonly buffer VC2 { uint vc2[]; };
#endif

// Element (pair) e of the chunk as one cache word.
uint word_k(uint e) { return KV16 != 0u ? packHalf2x16(vec2(k[2u * e], k[2u * e + 1u])) : floatBitsToUint(k[e]); }
uint word_v(uint e) { return KV16 != 0u ? packHalf2x16(vec2(v[2u * e], v[2u * e + 1u])) : floatBitsToUint(v[e]); }

void main() {
    const uint ROW = HK * D / (KV16 != 0u ? 2u : 1u);   // words per cache row
    uint i = flat_group_id() * WG + gl_LocalInvocationID.x;
    if (i >= N * ROW) return;
    uint t = i / ROW;
    uint p = step[P_POS] + (DUAL != 0 ? 0u : t);
    if (t >= step[P_NTOK] || p >= CTX) return;
    const uint HW = ROW / HK;                               // words per head row
    uint e = i - t * ROW, h = e / HW;
    uint dst = ((pc.layer * HK + h) * CTX + p) * HW + (e - h * HW);
#if DUAL
    if (t == 1u) {
        kc2[dst] = word_k(i);
        vc2[dst] = word_v(i);
        return;
    }
#endif
    kc[dst] = word_k(i);
    vc[dst] = word_v(i);
}
