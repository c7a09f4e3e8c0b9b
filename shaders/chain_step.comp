#version 450
// chain_step: out[i] = in[(i * STRIDE) % N] + ADD  (uint; exact)
// A dependency-chain probe for synchronisation: every element reads one written by another
// work-group of the previous dispatch, so a missing barrier shows up as stale values on GPUs that
// overlap dispatches. Bindings: 0 out u32[N] (w), 1 in u32[N] (r). Grid: ceil(N/WG), spilling into y.
// Twin: reference.chain_step.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint N = 1;
layout(constant_id = 2) const uint STRIDE = 7919;
layout(constant_id = 3) const uint ADD = 1;
layout(local_size_x_id = 0) in;
layout(binding = 0) writeonly buffer Out { uint o[]; };
layout(binding = 1) readonly buffer In { uint a[]; };
void main() {
    uint i = flat_group_id() * WG + gl_LocalInvocationID.x;
    if (i < N) o[i] = a[(i * STRIDE) % N] + ADD;   // i * STRIDE wraps mod 2^32: the twin does the same
}
