#version 450
// grad_weight: the weight gradient of x·Wᵀ (LoRA's A and B, small f32 weights trained from scratch):
//   dw[r, c] (+)= SCALE * sum_{n < N} dy[n, r] * x[n, c]        r < R, c < C
// Bindings: 0 dw f32[R, C] (rw: ACC=1 adds to it), 1 dy f32[N, R] (r), 2 x f32[N, C] (r).
// Constants: WG, R, C, N, TR (rows per group), TC (columns per lane), ACC (0: dw =, 1: dw +=),
//   SCALE (float).  Grid: ceil(R / TR) * ceil(C / (WG * TC)) groups, flattened over x and y.
// Twin: reference.grad_weight (float64).
//
// Work split: group g owns rows [rt*TR, rt*TR + TR) (rt = g / NCT) and WG*TC columns starting at
// ct*WG*TC (ct = g % NCT); lane l owns columns ct*WG*TC + l + WG*k, k < TC, so the lanes of one
// load read neighbouring words of x, and the TR values of dy it needs per token are the same for
// every lane of the group (uniform loads: one load broadcast on lavapipe). Each lane sums over
// all N tokens in order, TR x TC registers: no atomics, one writer per output, deterministic.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint R = 1;
layout(constant_id = 2) const uint C = 1;
layout(constant_id = 3) const uint N = 1;
layout(constant_id = 4) const uint TR = 8;
layout(constant_id = 5) const uint TC = 4;
layout(constant_id = 6) const uint ACC = 0;
layout(constant_id = 7) const float SCALE = 1.0;
layout(local_size_x_id = 0) in;

layout(binding = 0) buffer DW { float dw[]; };
layout(binding = 1) readonly buffer DY { float dy[]; };
layout(binding = 2) readonly buffer X { float x[]; };

#define MAX_TR 8u
#define MAX_TC 8u

void main() {
    const uint NCT = (C + WG * TC - 1u) / (WG * TC);
    uint g = flat_group_id(), lane = gl_LocalInvocationID.x;
    uint r0 = (g / NCT) * TR, cb = (g % NCT) * WG * TC + lane;
    float acc[MAX_TR * MAX_TC];
    for (uint e = 0u; e < MAX_TR * MAX_TC; e++) acc[e] = 0.0;
    for (uint n = 0u; n < N; n++) {
        float xv[MAX_TC];
        for (uint k = 0u; k < MAX_TC; k++) {
            if (k < TC) xv[k] = x[n * C + min(cb + k * WG, C - 1u)];   // columns past C are discarded
        }
        for (uint i = 0u; i < MAX_TR; i++) {
            if (i < TR) {
                float d = dy[n * R + min(r0 + i, R - 1u)];
                for (uint k = 0u; k < MAX_TC; k++) {
                    if (k < TC) acc[i * MAX_TC + k] = fma(d, xv[k], acc[i * MAX_TC + k]);
                }
            }
        }
    }
    for (uint i = 0u; i < MAX_TR; i++) {
        for (uint k = 0u; k < MAX_TC; k++) {
            uint r = r0 + i, c = cb + k * WG;
            if (i < TR && k < TC && r < R && c < C) {
                uint o = r * C + c;
                float s = SCALE * acc[i * MAX_TC + k];
                dw[o] = ACC != 0u ? dw[o] + s : s;
            }
        }
    }
}
