#version 450
// copy_bw: o[i] = a[i] over vec4s, each invocation streaming a contiguous run of RUN vec4s (on CPU
// drivers a lane's long contiguous stream is what reaches memory bandwidth). Used by `vkharp bench`
// to measure the device's copy bandwidth, the denominator of the decode floor.
// Bindings: 0 o vec4[N4] (w), 1 a vec4[N4] (r). Grid: ceil(N4 / (WG * RUN)), spilling into y.
// Twin: reference.copy_bw (the identity).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint N4 = 1;
layout(constant_id = 2) const uint RUN = 256;
layout(local_size_x_id = 0) in;
layout(binding = 0) writeonly buffer Out { vec4 o[]; };
layout(binding = 1) readonly buffer In { vec4 a[]; };
void main() {
    uint start = (flat_group_id() * WG + gl_LocalInvocationID.x) * RUN;
    uint end = min(start + RUN, N4);
    for (uint i = start; i < end; i++) o[i] = a[i];
}
