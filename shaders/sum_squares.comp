#version 450
// sum_squares: partial sums of squares for a global gradient norm, deterministic:
//   out[OFF + g] = sum_{i in chunk g} x[i]^2,  chunk g = [g*CHUNK, min(N, (g+1)*CHUNK)),  g < G
// The host reads the G floats and adds them (float64); G = engine.ops.sum_squares_groups(device, N).
// Lane l of group g sums its chunk's elements l, l + WG, ... in order, then the WG partials meet
// in a fixed shared-memory tree: the same order on every run.
// Bindings: 0 out f32[>= OFF + G] (w), 1 x f32[N] (r).  Constants: WG (a power of two), N, CHUNK, OFF.
// Grid: G groups.  Twin: reference.sum_squares (float64 per chunk).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint N = 1;
layout(constant_id = 2) const uint CHUNK = 1;
layout(constant_id = 3) const uint OFF = 0;
layout(local_size_x_id = 0) in;

layout(binding = 0) writeonly buffer Out { float o[]; };
layout(binding = 1) readonly buffer X { float x[]; };

shared float part[WG];

void main() {
    uint g = flat_group_id(), lane = gl_LocalInvocationID.x;
    uint a = g * CHUNK, b = min(N, a + CHUNK);
    float s = 0.0;
    for (uint i = a + lane; i < b; i += WG) s = fma(x[i], x[i], s);
    part[lane] = s;
    barrier();
    for (uint h = WG / 2u; h > 0u; h >>= 1) {
        if (lane < h) part[lane] += part[lane + h];
        barrier();
    }
    if (lane == 0u) o[OFF + g] = part[0];
}
