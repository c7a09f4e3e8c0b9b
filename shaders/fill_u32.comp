#version 450
// fill_u32: out[i] = VALUE for i < N (zeroes store buffers, which have no host copy).
// Bindings: 0 out u32[N] (w).  Grid: ceil(N / WG) groups, spilling into y.  Twin: reference.fill_u32.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint N = 1;
layout(constant_id = 2) const uint VALUE = 0;
layout(local_size_x_id = 0) in;
layout(binding = 0) writeonly buffer Out { uint o[]; };
void main() {
    uint i = flat_group_id() * WG + gl_LocalInvocationID.x;
    if (i < N) o[i] = VALUE;
}
