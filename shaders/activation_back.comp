#version 450
// @variant swiglu_back  ACT=0
// @variant geglu_back   ACT=1
// Backward of the gated MLP activation mlp = act(gate) * up (shaders/activation.comp) over N floats:
//   dgate[i] = dmlp[i] * up[i] * act'(gate[i]),   dup[i] = dmlp[i] * act(gate[i])
//   silu:        act(x) = x s(x), s = sigmoid;           act'(x) = s(x) (1 + x s(-x))
//   gelu (tanh): act(x) = x s(z), z = 2u = x (K1 + K3 x^2); act'(x) = s(z) + x s(z) s(-z) (K1 + 3 K3 x^2)
// s(z) and s(-z) both come from e = exp(-|z|) <= 1: no overflow, no cancellation in 1 - s(z).
// act(x) for dup is activation.glsl's, so it rounds as the forward's did.
// Bindings: 0 dgate f32[N] (w), 1 dup f32[N] (w), 2 gate f32[N] (r), 3 up f32[N] (r), 4 dmlp f32[N] (r).
// Constants: WG, N.  Grid: ceil(N / WG) groups, spilling into y.  Twin: reference.glu_back.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint N = 1;
layout(local_size_x_id = 0) in;
layout(binding = 0) writeonly buffer DGate { float dg[]; };
layout(binding = 1) writeonly buffer DUp { float du[]; };
layout(binding = 2) readonly buffer Gate { float g[]; };
layout(binding = 3) readonly buffer Up { float u[]; };
layout(binding = 4) readonly buffer DMlp { float dm[]; };

#include "activation.glsl"

// (s(z), s(-z))
vec2 sigmoid_pair(float z) {
    float e = exp(-abs(z));
    float a = 1.0 / (1.0 + e), b = e / (1.0 + e);
    return z >= 0.0 ? vec2(a, b) : vec2(b, a);
}

float act_grad(float x) {
#if ACT == 0
    vec2 s = sigmoid_pair(x);
    return s.x * (1.0 + x * s.y);
#else
    const float K1 = 1.5957691216057308, K3 = 0.07135481627260025;
    float x2 = x * x;
    vec2 s = sigmoid_pair(x * (K1 + K3 * x2));
    return s.x + x * s.x * s.y * (K1 + 3.0 * K3 * x2);
#endif
}

void main() {
    uint i = flat_group_id() * WG + gl_LocalInvocationID.x;
    if (i >= N) return;
    float x = g[i], d = dm[i];
    dg[i] = d * u[i] * act_grad(x);
    du[i] = d * activation(ACT, x);
}
