#version 450
// Row moves the training graph (engine/tune/) needs between its shared buffers:
//   copy_block[_acc]: o[DST + i] (+)= x[SRC + i], i < N. SRC, DST are push constants (one pipeline
//       serves every layer's slot of a layer-stacked buffer: the saved layer inputs).
//   gather_rows:  o[i, c] = idx[i] < SRC_ROWS ? x[idx[i], c] : 0     i < NIDX, c < DIM
//   scatter_rows: o[idx[i], c] += x[i, c]  where idx[i] < DST_ROWS   (the gather's backward; the
//       host guarantees the valid indices are distinct, so no two invocations add to one element)
// The indices live in a host-written buffer: which rows of a sequence are answer rows changes per
// example, and the program is recorded once.
// Bindings: 0 o f32 (w; rw for _acc and scatter), 1 x f32 (r), [2 idx u32[NIDX] (r)].
// Constants: WG, N (copy_block) or NIDX, DIM, SRC_ROWS / DST_ROWS. Grid: ceil(N / WG) or ceil(NIDX * DIM / WG).
// Twins: reference.copy_block, reference.gather_rows, reference.scatter_rows.
// @variant copy_block      MODE=0 ACC=0
// @variant copy_block_acc  MODE=0 ACC=1
// @variant gather_rows     MODE=1 ACC=0
// @variant scatter_rows    MODE=2 ACC=1
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint N = 1;      // copy_block: floats to move
layout(constant_id = 2) const uint NIDX = 1;   // gather/scatter: rows listed in idx
layout(constant_id = 3) const uint DIM = 1;    // gather/scatter: floats per row
layout(constant_id = 4) const uint ROWS = 1;   // gather: rows of x; scatter: rows of o
layout(local_size_x_id = 0) in;
#if ACC
layout(binding = 0) buffer Out { float o[]; };
#else
layout(binding = 0) writeonly buffer Out { float o[]; };
#endif
layout(binding = 1) readonly buffer X { float x[]; };
#if MODE > 0
layout(binding = 2) readonly buffer Idx { uint idx[]; };
#else
layout(push_constant) uniform P { uint src; uint dst; } pc;
#endif
void main() {
    uint e = flat_group_id() * WG + gl_LocalInvocationID.x;
#if MODE == 0
    if (e >= N) return;
  #if ACC
    o[pc.dst + e] += x[pc.src + e];
  #else
    o[pc.dst + e] = x[pc.src + e];
  #endif
#else
    if (e >= NIDX * DIM) return;
    uint i = e / DIM, c = e - i * DIM, r = idx[i];
  #if MODE == 1
    o[e] = r < ROWS ? x[r * DIM + c] : 0.0;
  #else
    if (r < ROWS) o[r * DIM + c] += x[e];
  #endif
#endif
}
