#version 450
// @variant add            OP=0 INPLACE=0
// @variant add_inplace    OP=0 INPLACE=1
// @variant scale          OP=1 INPLACE=0
// @variant scale_inplace  OP=1 INPLACE=1
// @variant mix            OP=2 INPLACE=0
// @variant mix_inplace    OP=2 INPLACE=1
// @variant rand_uniform   OP=3 INPLACE=0
// @variant split_mix      OP=4 INPLACE=0
// @variant softcap        OP=5 INPLACE=0
// @variant softcap_inplace OP=5 INPLACE=1
// @variant softcap_back          OP=6 INPLACE=0
// @variant softcap_back_inplace  OP=6 INPLACE=1
// @variant neg_abs        OP=7 INPLACE=0
// @variant neg_abs_inplace OP=7 INPLACE=1
// Element-wise ops over N floats (any shape, flattened):
//   add:   o[i] = a[i] + b[i]                    (residual connections)
//   scale: o[i] = CA * a[i]
//   mix:   o[i] = CA * a[i] + CB * b[i]          (HARP's logit mix: CA = beta, CB = 1 - beta)
//   rand_uniform: o[t*D + d] = rng_uniform(seed, pos + t, d), t < N/D   (seed, pos from the step buffer)
//   split_mix: o[i] = x[i];  o2[i] = CA * x[i] + CB * x[N + i]   (HARP's two streams: x = logits [2, N],
//              o = the original row, o2 = the mix; one pass over both rows)
//   softcap: o[i] = CA * tanh(a[i] / CA)          (Gemma 2's final-logit soft-capping, CA = the cap)
//              tanh as Cephes tanhf (relative error ~1.3e-7): GLSL's tanh has no precision bound.
//   softcap_back: o[i] = b[i] * (1 - (a[i] / CA)^2), a = the capped y, b = its gradient dy (the backward of
//              softcap given its output); in place the gradient is overwritten: a = dy (rw), b = y.
//   neg_abs: o[i] = -|a[i]|                       (the target-only output convention: outputs are distances,
//              the nearest to zero is the prediction; -|y| makes it the largest logit)
// Bindings, out-of-place: 0 o f32[N] (w), 1 a f32[N] (r) [, 2 b f32[N] (r)].
//           in-place (o is a): 0 a f32[N] (rw) [, 1 b f32[N] (r)].
//           rand_uniform: 0 o f32[N] (w), 1 step u32[STEP_WORDS] (r).
//           split_mix: 0 o f32[N] (w), 1 o2 f32[N] (w), 2 x f32[2N] (r).
// Constants: WG, N, CA, CB (floats), D (rand_uniform's row length).
// Grid: ceil(N / WG) groups, spilling into y.  Twins: reference.add, .scale, .mix, .rand_uniform, .softcap,
//   .softcap_back, .neg_abs.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint N = 1;
layout(constant_id = 2) const float CA = 1.0;
layout(constant_id = 3) const float CB = 1.0;
layout(constant_id = 4) const uint D = 1;
layout(local_size_x_id = 0) in;

#if OP == 4
layout(binding = 0) writeonly buffer Out { float o[]; };
layout(binding = 1) writeonly buffer Out2 { float o2[]; };
layout(binding = 2) readonly buffer X { float x[]; };
#elif OP == 3
#include "params.glsl"
#include "rng.glsl"
layout(binding = 0) writeonly buffer Out { float o[]; };
layout(binding = 1) readonly buffer Step { uint step[]; };
#elif INPLACE
layout(binding = 0) buffer A { float a[]; };
  #if OP != 1 && OP != 5 && OP != 7
layout(binding = 1) readonly buffer B { float b[]; };
  #endif
  #define OUT a
#else
layout(binding = 0) writeonly buffer Out { float o[]; };
layout(binding = 1) readonly buffer A { float a[]; };
  #if OP != 1 && OP != 5 && OP != 7
layout(binding = 2) readonly buffer B { float b[]; };
  #endif
  #define OUT o
#endif

#if OP == 5
float tanh_cephes(float x) {
    float ax = abs(x);
    if (ax >= 0.625) {                 // 1 - 2 / (e^2|x| + 1); tanh(10) is 1.0 in f32
        float e = exp(2.0 * min(ax, 10.0));
        return sign(x) * (1.0 - 2.0 / (e + 1.0));
    }
    float z = x * x;                   // odd minimax polynomial on |x| < 0.625
    return ((((-5.70498872745e-3 * z + 2.06390887954e-2) * z - 5.37397155531e-2) * z
             + 1.33314422036e-1) * z - 3.33332819422e-1) * z * x + x;
}
#endif

void main() {
    uint i = flat_group_id() * WG + gl_LocalInvocationID.x;
    if (i >= N) return;
#if OP == 0
    OUT[i] = a[i] + b[i];
#elif OP == 1
    OUT[i] = CA * a[i];
#elif OP == 2
    OUT[i] = CA * a[i] + CB * b[i];
#elif OP == 5
    OUT[i] = CA * tanh_cephes(a[i] / CA);
#elif OP == 6 && INPLACE
    float r = b[i] / CA;
    a[i] = a[i] * (1.0 - r * r);
#elif OP == 6
    float r = a[i] / CA;
    o[i] = b[i] * (1.0 - r * r);
#elif OP == 7
    OUT[i] = -abs(a[i]);
#elif OP == 4
    float a = x[i];
    o[i] = a;
    o2[i] = CA * a + CB * x[N + i];
#else
    uint t = i / D;
    o[i] = rng_uniform(step[P_SEED], step[P_POS] + t, i - t * D);
#endif
}
