#version 450
// pool_sum: acc[i] = (P_POS == 0 ? 0 : acc[i]) + sum_{r < P_NTOK} x[r * DIM + i] — the sum of a
// chunk's valid rows, carried across the chunks of one pass: the chunk at position 0 starts it, later
// chunks add to it (P_POS and P_NTOK from the step parameters, chosen at replay). Mean pooling of
// sentence vectors: the host only reads the sum back once, after the last chunk.
// Bindings: 0 acc f32[DIM] (rw), 1 x f32[ROWS, DIM] (r), 2 step u32[STEP_WORDS] (r).
// Grid: ceil(DIM / WG).  Twin: reference.pool_sum.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "params.glsl"
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint DIM = 1;
layout(constant_id = 2) const uint ROWS = 1;
layout(local_size_x_id = 0) in;
layout(binding = 0) buffer Acc { float acc[]; };
layout(binding = 1) readonly buffer X { float x[]; };
layout(binding = 2) readonly buffer Step { uint step[]; };
void main() {
    uint i = flat_group_id() * WG + gl_LocalInvocationID.x;
    if (i >= DIM) return;
    uint n = min(step[P_NTOK], ROWS);
    float s = step[P_POS] == 0u ? 0.0 : acc[i];
    for (uint r = 0u; r < n; ++r) s += x[r * DIM + i];
    acc[i] = s;
}
