#version 450
// adamw: one AdamW step (decoupled weight decay, torch.optim.AdamW's order of operations) per
// element i < N, with seed idea 5's threshold:
//   g = grad_scale * grad[i]
//   |g| < threshold: param, m, v unchanged (not decayed either: the element sits this step out)
//   else: p = param[i] * (1 - lr*wd);  m = lerp(m, g, 1 - beta1);  v = beta2*v + (1 - beta2)*g*g
//         param[i] = p - step_size * m / (sqrt(v) / bc2_sqrt + eps)
//   counts[2*slot] += elements updated, counts[2*slot + 1] += elements seen (one atomic per group).
// The hyperparameters are read from `hyper` at run time (a host-written param buffer, laid out by
// engine/ops/adamw.py's pack_hyper, which derives step_size = lr / (1 - beta1^step) and
// bc2_sqrt = sqrt(1 - beta2^step)), so one recorded program serves every step.
// Bindings: 0 param f32[N] (rw), 1 grad f32[N] (r), 2 m f32[N] (rw), 3 v f32[N] (rw),
//   4 hyper f32[HYPER_WORDS] (r), 5 counts u32[2 * (slot + 1)] (rw, atomics).
// Constants: WG, N, SLOT.  Grid: ceil(N / WG) groups, spilling into y.  Twin: reference.adamw.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint N = 1;
layout(constant_id = 2) const uint SLOT = 0;
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
    uint i = flat_group_id() * WG + gl_LocalInvocationID.x, lane = gl_LocalInvocationID.x;
    uint upd = 0u;
    if (i < N) {
        float g = hyper[H_GRAD_SCALE] * grad[i];
        if (!(abs(g) < hyper[H_THRESHOLD])) {   // NaN gradients update (and show as NaN): the host checks norms
            float p = param[i] * hyper[H_DECAY];
            float m = m1[i];
            m = m + hyper[H_ONE_MINUS_BETA1] * (g - m);
            float v = hyper[H_BETA2] * m2[i] + hyper[H_ONE_MINUS_BETA2] * (g * g);
            float denom = sqrt(v) / hyper[H_BC2_SQRT] + hyper[H_EPS];
            param[i] = p - hyper[H_STEP_SIZE] * (m / denom);
            m1[i] = m;
            m2[i] = v;
            upd = 1u;
        }
    }
    updated[lane] = upd;
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1) {   // WG is a power of two (the launcher checks)
        if (lane < s) updated[lane] += updated[lane + s];
        barrier();
    }
    if (lane == 0u) {
        uint base = flat_group_id() * WG;
        atomicAdd(counts[2u * SLOT], updated[0]);
        atomicAdd(counts[2u * SLOT + 1u], min(WG, N - base));
    }
}
