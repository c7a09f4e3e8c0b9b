#version 450
// @variant embed_back_links  PASS=0
// @variant embed_back        PASS=1
// Backward of the embedding gather out[n,:] = SCALE * table[ids[n],:] (a model trained from scratch):
//   dtable[v,c] += SCALE * sum_{n : ids[n] == v} dx[n,c]
// embed_back_links: one invocation per token n finds the next token with the same id (NTOK if none) and
//   whether n is its id's first occurrence: link[n] = next | (n is not first ? 1 << 31 : 0).
//   O(NTOK^2) compares in all. Bindings: 0 link u32[NTOK] (w), 1 ids u32[NTOK] (r).
//   Grid: ceil(NTOK / WG) groups.
// embed_back: one group per (token n, block of WG columns); the group of an id's first occurrence follows
//   the links, summing the dx rows of every occurrence in token order, and adds the sum to row ids[n];
//   other groups return at once. Each row is written by one group: no float atomics, deterministic.
//   The launcher zeroes dtable first unless accumulating. Ids >= V are skipped.
//   Bindings: 0 dtable f32[V,COLS] (rw), 1 ids u32[NTOK] (r), 2 dx f32[NTOK,COLS] (r), 3 link u32[NTOK] (r).
//   Grid: NTOK * ceil(COLS / WG) groups, spilling into y.
// Twin: reference.embed_back.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint COLS = 1;
layout(constant_id = 2) const uint NTOK = 1;
layout(constant_id = 3) const uint V = 1;
layout(constant_id = 4) const float SCALE = 1.0;
layout(local_size_x_id = 0) in;
const uint NOT_FIRST = 0x80000000u;
#if PASS == 0
layout(binding = 0) writeonly buffer Link { uint link[]; };
layout(binding = 1) readonly buffer Ids { uint ids[]; };

void main() {
    uint n = flat_group_id() * WG + gl_LocalInvocationID.x;
    if (n >= NTOK) return;
    uint v = ids[n], next = NTOK, flag = 0u;
    for (uint m = 0u; m < n; m++)
        if (ids[m] == v) flag = NOT_FIRST;
    for (uint m = NTOK; m > n + 1u; m--)        // the smallest m > n with the same id
        if (ids[m - 1u] == v) next = m - 1u;
    link[n] = next | flag;
}
#else
layout(binding = 0) buffer DT { float dt[]; };
layout(binding = 1) readonly buffer Ids { uint ids[]; };
layout(binding = 2) readonly buffer DX { float dx[]; };
layout(binding = 3) readonly buffer Link { uint link[]; };

void main() {
    const uint CB = (COLS + WG - 1u) / WG;
    uint gid = flat_group_id();
    uint n = gid / CB, c = (gid % CB) * WG + gl_LocalInvocationID.x;
    if (n >= NTOK || c >= COLS) return;
    uint v = ids[n], l = link[n];
    if (v >= V || (l & NOT_FIRST) != 0u) return;
    float acc = dx[n * COLS + c];
    for (uint m = l; m < NTOK; m = link[m] & ~NOT_FIRST) acc += dx[m * COLS + c];
    dt[v * COLS + c] += SCALE * acc;
}
#endif
