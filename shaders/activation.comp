#version 450
// @variant swiglu     ACT=0 GATED=1
// @variant geglu      ACT=1 GATED=1
// @variant geglu_erf  ACT=2 GATED=1
// @variant silu       ACT=0 GATED=0
// @variant gelu       ACT=1 GATED=0
// @variant gelu_erf   ACT=2 GATED=0
// Gated:   o[i] = act(gate[i]) * up[i]        Plain: o[i] = act(x[i])        over N = rows * F floats.
//   silu(x)      = x / (1 + exp(-x))
//   gelu (tanh)  = 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3)   (HF "gelu_pytorch_tanh"),
//                  evaluated as the identical x / (1 + exp(-2u)): no tanh (whose exp form overflows
//                  to NaN on some drivers) and no cancellation in 1 + tanh(u) for negative u.
//   gelu_erf     = x * Phi(x) = 0.5 x erfc(-x / sqrt(2)) (torch's exact GELU). GLSL has no erf:
//                  erfc(z >= 0) is Numerical Recipes' erfcc Chebyshev fit, fractional error < 1.2e-7
//                  for every z, so x * Phi(x) keeps its relative accuracy in the far negative tail.
// Large |x| gives no inf/NaN: where the exp argument would pass 80 (true |result| < 2e-33) the result
// is 0; exp never overflows and no division has an infinite divisor. NaN inputs stay NaN.
// Bindings: 0 o f32[N] (w), 1 gate (or x) f32[N] (r) [, 2 up f32[N] (r)].
// Constants: WG, N.  Grid: ceil(N / WG) groups, spilling into y.
// Twins: reference.swiglu, .geglu, .silu, .gelu (approximate="tanh" | "none").
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint N = 1;
layout(local_size_x_id = 0) in;
layout(binding = 0) writeonly buffer Out { float o[]; };
layout(binding = 1) readonly buffer Gate { float g[]; };
#if GATED
layout(binding = 2) readonly buffer Up { float u[]; };
#endif

#include "activation.glsl"

void main() {
    uint i = flat_group_id() * WG + gl_LocalInvocationID.x;
    if (i >= N) return;
#if GATED
    o[i] = activation(ACT, g[i]) * u[i];
#else
    o[i] = activation(ACT, g[i]);
#endif
}
