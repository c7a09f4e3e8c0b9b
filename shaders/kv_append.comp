#version 450
// @variant kv_append
// @variant kv_append_dual  DUAL=1
// KV-cache append: cache row P_POS + t <- chunk row t, for t < P_NTOK (and P_POS + t < CTX: a bad
// position writes nothing rather than out of bounds). Rollback needs no shader: a smaller P_POS next
// time simply overwrites.
//   k_cache[P_POS + t, h, :] = k[t, h, :];  v_cache[P_POS + t, h, :] = v[t, h, :]
// Cache layout (engine/kv_cache.py): position-major f32[L, CTX, HK, D] (layers stacked; pc.layer picks one), K and V in separate buffers.
// Bindings: 0 k_cache f32[CTX,HK,D] (w), 1 v_cache f32[CTX,HK,D] (w), 2 k f32[N,HK,D] (r),
//           3 v f32[N,HK,D] (r), 4 step u32[STEP_WORDS] (r: P_POS, P_NTOK).
// The caches are `store` buffers: no later dispatch of the same program may read what this writes.
// kv_append_dual (HARP cached mode): N = 2 streams at the same position P_POS; row 1 goes to the
//   caches at bindings 5/6.
// Grid: one invocation per chunk element: ceil(N*HK*D / WG) groups.  Twin: reference.kv_append.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "params.glsl"
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint N = 1;     // tokens in the chunk
layout(constant_id = 2) const uint HK = 1;    // key/value heads
layout(constant_id = 3) const uint D = 1;     // head dim
layout(constant_id = 4) const uint CTX = 1;   // cache positions
layout(local_size_x_id = 0) in;
layout(push_constant) uniform Push { uint layer; } pc;   // caches stack layers: [L, CTX, HK, D]
layout(binding = 0) writeonly buffer KC { float kc[]; };
layout(binding = 1) writeonly buffer VC { float vc[]; };
layout(binding = 2) readonly buffer K { float k[]; };
layout(binding = 3) readonly buffer V { float v[]; };
layout(binding = 4) readonly buffer Step { uint step[]; };
#ifndef DUAL
#define DUAL 0
#endif
#if DUAL
layout(binding = 5) writeonly buffer KC2 { float kc2[]; };
layout(binding = 6) writeonly buffer VC2 { float vc2[]; };
#endif

void main() {
    uint i = flat_group_id() * WG + gl_LocalInvocationID.x;
    const uint ROW = HK * D;
    if (i >= N * ROW) return;
    uint t = i / ROW;
    uint p = step[P_POS] + (DUAL != 0 ? 0u : t);
    if (t >= step[P_NTOK] || p >= CTX) return;
    uint dst = (pc.layer * CTX + p) * ROW + (i - t * ROW);
#if DUAL
    if (t == 1u) {
        kc2[dst] = k[i];
        vc2[dst] = v[i];
        return;
    }
#endif
    kc[dst] = k[i];
    vc[dst] = v[i];
}
