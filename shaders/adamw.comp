#version 450
// adamw: one AdamW step (decoupled weight decay, torch.optim.AdamW's order of operations) per
// element i < N, with seed idea 5's threshold:
//   g = grad_scale * grad[i]
//   |g| < threshold: param, m, v unchanged (not decayed either: the element sits this step out)
//   else: p = param[i] * (1 - lr*wd);  m = lerp(m, g, 1 - beta1);  v = beta2*v + (1 - beta2)*g*g
//         param[i] = p - step_size * m / (sqrt(v) / bc2_sqrt + eps)
//   counts[2*slot] += elements updated, counts[2*slot + 1] += elements seen (one atomic per group).
// Lane l of group g steps elements g*WG*EPT + k*WG + l (k < EPT), so one shared-memory sum (one
// barrier; on lavapipe each barrier switches between the group's SIMD programs) and two atomics
// serve WG*EPT elements.
// The hyperparameters are read from `hyper` at run time (a host-written param buffer, laid out by
// engine/ops/adamw.py's pack_hyper, which derives step_size = lr / (1 - beta1^step) and
// bc2_sqrt = sqrt(1 - beta2^step)), so one recorded program serves every step.
// Bindings: 0 param f32[N] (rw), 1 grad f32[N] (r), 2 m f32[N] (rw), 3 v f32[N] (rw),
//   4 hyper f32[HYPER_WORDS] (r), 5 counts u32[2 * (slot + 1)] (rw, atomics).
// Constants: WG, N, SLOT, EPT.  Grid: ceil(N / (WG*EPT)) groups, spilling into y.  Twin: reference.adamw.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint N = 1;
layout(constant_id = 2) const uint SLOT = 0;
layout(constant_id = 3) const uint EPT = 1;
layout(local_size_x_id = 0) in;

layout(binding = 0) buffer P { float param[]; };
layout(binding = 1) readonly buffer G { float grad[]; };
layout(binding = 2) buffer M { float m1[]; };
layout(binding = 3) buffer V { float m2[]; };
layout(binding = 4) readonly buffer H { float hyper[]; };
layout(binding = 5) buffer Counts { uint counts[]; };

// hyper's words (engine/ops/adamw.py HYPER_FIELDS)
#define H_LR 0
#define H_BETA1 1
#define H_BETA2 2
#define H_EPS 3
#define H_WD 4
#define H_THRESHOLD 5
#define H_GRAD_SCALE 6
#define H_STEP_SIZE 7
#define H_BC2_SQRT 8
#define H_DECAY 9
#define H_ONE_MINUS_BETA1 10
#define H_ONE_MINUS_BETA2 11

shared uint updated[WG];

void main() {
    uint lane = gl_LocalInvocationID.x, base = flat_group_id() * WG * EPT;
    float lr_step = hyper[H_STEP_SIZE], bc2 = hyper[H_BC2_SQRT], eps = hyper[H_EPS], decay = hyper[H_DECAY];
    float b2 = hyper[H_BETA2], omb1 = hyper[H_ONE_MINUS_BETA1], omb2 = hyper[H_ONE_MINUS_BETA2];
    float th = hyper[H_THRESHOLD], gs = hyper[H_GRAD_SCALE];
    uint upd = 0u;
    for (uint k = 0u; k < EPT; k++) {
        uint i = base + k * WG + lane;
        if (i >= N) break;
        float g = gs * grad[i];
        if (!(abs(g) < th)) {   // NaN gradients update (and show as NaN): the host checks norms
            float p = param[i] * decay;
            float m = m1[i];
            m = m + omb1 * (g - m);
            float v = b2 * m2[i] + omb2 * (g * g);
            float denom = sqrt(v) / bc2 + eps;
            param[i] = p - lr_step * (m / denom);
            m1[i] = m;
            m2[i] = v;
            upd++;
        }
    }
    updated[lane] = upd;
    barrier();
    if (lane == 0u) {
        uint total = 0u;
        for (uint l = 0u; l < WG; l++) total += updated[l];
        atomicAdd(counts[2u * SLOT], total);
        atomicAdd(counts[2u * SLOT + 1u], min(WG * EPT, N - base));
    }
}
