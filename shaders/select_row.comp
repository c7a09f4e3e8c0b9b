#version 450
// select_row: out[i] = x[(P_NTOK - 1) * DIM + i] — the last valid row of a prefill chunk, chosen at
// replay time (P_NTOK from the step parameters), so generation computes logits for one row only.
// Bindings: 0 out f32[DIM] (w), 1 x f32[ROWS, DIM] (r), 2 step u32[STEP_WORDS] (r).
// Grid: ceil(DIM / WG).  Twin: reference.select_row.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
#include "params.glsl"
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint DIM = 1;
layout(constant_id = 2) const uint ROWS = 1;
layout(local_size_x_id = 0) in;
layout(binding = 0) writeonly buffer Out { float o[]; };
layout(binding = 1) readonly buffer X { float x[]; };
layout(binding = 2) readonly buffer Step { uint step[]; };
void main() {
    uint i = flat_group_id() * WG + gl_LocalInvocationID.x;
    uint row = clamp(step[P_NTOK], 1u, ROWS) - 1u;
    if (i < DIM) o[i] = x[row * DIM + i];
}
