#version 450
// @variant embed_back      ACC=0
// @variant embed_back_acc  ACC=1
// Backward of the embedding gather out[n,:] = SCALE * table[ids[n],:] (a model trained from scratch):
//   dtable[v,c] (+)= SCALE * sum_{n : ids[n] == v} dx[n,c]
// One work-group per (row v, block of WG columns); every thread of it walks the NTOK ids in order (a
// uniform loop: the ids are read once per group) and adds the rows that match: a fixed order,
// no float atomics, so the result is deterministic. Rows no id names get 0 (ACC=0) or stay (ACC=1).
// Bindings: 0 dtable f32[V,COLS] (w; rw with _acc), 1 ids u32[NTOK] (r), 2 dx f32[NTOK,COLS] (r).
// Grid: V * ceil(COLS / WG) groups, spilling into y.  Twin: reference.embed_back.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint COLS = 1;
layout(constant_id = 2) const uint NTOK = 1;
layout(constant_id = 3) const uint V = 1;
layout(constant_id = 4) const float SCALE = 1.0;
layout(local_size_x_id = 0) in;
#if ACC
layout(binding = 0) buffer DT { float dt[]; };
#else
layout(binding = 0) writeonly buffer DT { float dt[]; };
#endif
layout(binding = 1) readonly buffer Ids { uint ids[]; };
layout(binding = 2) readonly buffer DX { float dx[]; };

void main() {
    const uint CB = (COLS + WG - 1u) / WG;
    uint gid = flat_group_id();
    uint v = gid / CB, c = (gid % CB) * WG + gl_LocalInvocationID.x;
    if (v >= V || c >= COLS) return;
    float acc = 0.0;
    for (uint n = 0u; n < NTOK; n++)
        if (ids[n] == v) acc += dx[n * COLS + c];
#if ACC
    dt[v * COLS + c] += SCALE * acc;
#else
    dt[v * COLS + c] = SCALE * acc;
#endif
}
