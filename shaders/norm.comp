#version 450
// @variant rmsnorm    LAYERNORM=0
// @variant layernorm  LAYERNORM=1
// RMSNorm:   out[r,i] = x[r,i] / sqrt(mean_i(x[r,:]^2) + EPS) * w[i]
// LayerNorm: out[r,i] = (x[r,i] - mean) / sqrt(var + EPS) * w[i] + b[i]   (biased variance, as torch)
// Bindings: 0 out f32[ROWS,DIM] (w), 1 x f32[ROWS,DIM] (r), 2 w f32[DIM] (r) [, 3 b f32[DIM] (r)].
// One work-group per row; WG invocations stride over the row and reduce in shared memory.
// Grid: ROWS groups (spilling into y).  Twins: reference.rmsnorm, reference.layernorm.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint DIM = 1;
layout(constant_id = 2) const uint ROWS = 1;
layout(constant_id = 3) const float EPS = 1e-5;
layout(local_size_x_id = 0) in;
layout(push_constant) uniform Push { uint woff; } pc;   // offset of this layer's weights (stacked [L, DIM])
layout(binding = 0) writeonly buffer Out { float o[]; };
layout(binding = 1) readonly buffer X { float x[]; };
layout(binding = 2) readonly buffer W { float w[]; };
#if LAYERNORM
layout(binding = 3) readonly buffer B { float b[]; };
#endif
shared float red[WG];

float block_sum(float v) {
    uint t = gl_LocalInvocationID.x;
    red[t] = v;
    barrier();
    for (uint s = WG / 2; s > 0; s >>= 1) {
        if (t < s) red[t] += red[t + s];
        barrier();
    }
    float r = red[0];
    barrier();
    return r;
}

void main() {
    uint row = flat_group_id();
    if (row >= ROWS) return;
    uint t = gl_LocalInvocationID.x, base = row * DIM;
#if LAYERNORM
    float s = 0.0;
    for (uint i = t; i < DIM; i += WG) s += x[base + i];
    float mean = block_sum(s) / float(DIM);
    float q = 0.0;
    for (uint i = t; i < DIM; i += WG) { float d = x[base + i] - mean; q += d * d; }
    float scale = inversesqrt(block_sum(q) / float(DIM) + EPS);
    for (uint i = t; i < DIM; i += WG) o[base + i] = (x[base + i] - mean) * scale * w[pc.woff + i] + b[pc.woff + i];
#else
    float q = 0.0;
    for (uint i = t; i < DIM; i += WG) { float v = x[base + i]; q += v * v; }
    float scale = inversesqrt(block_sum(q) / float(DIM) + EPS);
    for (uint i = t; i < DIM; i += WG) o[base + i] = x[base + i] * scale * w[pc.woff + i];
#endif
}
