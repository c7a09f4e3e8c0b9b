#version 450
// grad_weight: the weight gradient of x·Wᵀ (LoRA's A and B, small f32 weights trained from scratch):
//   dw[dwo + r*C + c] (+)= SCALE * sum_{n < N} dy[dyo + n*R + r] * x[xo + n*C + c]    r < R, c < C
// Bindings: 0 dw f32[.., R, C] (rw: ACC=1 adds to it), 1 dy f32[.., N, R] (r), 2 x f32[.., N, C] (r).
// Push: dwo, dyo, xo: element offsets (a layer's slice of layer-stacked buffers; one pipeline for all).
// Constants: WG, R, C, N, TR (rows per lane), TC (columns per lane), LC (column lanes; WG % LC = 0),
//   ACC (0: dw =, 1: dw +=), SCALE (float).
// Grid: ceil(R / (LR*TR)) * ceil(C / (LC*TC)) groups (LR = WG / LC), flattened over x and y.
// Twin: reference.grad_weight (float64).
//
// Work split: the group's lanes form LR row lanes x LC column lanes; lane (lr, lc) of group g owns
// rows r0 + lr*TR + i (i < TR) and columns c0 + lc + LC*k (k < TC) of the group's tile, so the
// lanes of a load read neighbouring words of x, and with LC = WG (wide C) the TR values of dy a
// token needs are the same for every lane (uniform loads). Narrow C (LoRA's B: C = rank) puts the
// spare lanes on rows instead of leaving them idle. Each lane sums over all N tokens in order into
// TR x TC registers: no atomics, one writer per output, deterministic. The register arrays are
// indexed only by their own loops' variables (trip count = length), so Mesa unrolls the loops and
// keeps them in registers rather than scratch memory.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint R = 1;
layout(constant_id = 2) const uint C = 1;
layout(constant_id = 3) const uint N = 1;
layout(constant_id = 4) const uint TR = 8;
layout(constant_id = 5) const uint TC = 4;
layout(constant_id = 6) const uint LC = 64;
layout(constant_id = 7) const uint ACC = 0;
layout(constant_id = 8) const float SCALE = 1.0;
layout(local_size_x_id = 0) in;
layout(push_constant) uniform Push { uint dwo; uint dyo; uint xo; } pc;

layout(binding = 0) buffer DW { float dw[]; };
layout(binding = 1) readonly buffer DY { float dy[]; };
layout(binding = 2) readonly buffer X { float x[]; };

#define MAX_TR 8u
#define MAX_TC 8u

void main() {
    const uint LR = WG / LC, NCT = (C + LC * TC - 1u) / (LC * TC);
    uint g = flat_group_id(), lane = gl_LocalInvocationID.x;
    uint rb = (g / NCT) * LR * TR + (lane / LC) * TR, cb = (g % NCT) * LC * TC + lane % LC;
    uint rows[MAX_TR], cols[MAX_TC];
    for (uint i = 0u; i < MAX_TR; i++) rows[i] = min(rb + i, R - 1u);         // past R or C: computed,
    for (uint k = 0u; k < MAX_TC; k++) cols[k] = min(cb + k * LC, C - 1u);    // not stored
    float acc[MAX_TR][MAX_TC];
    for (uint i = 0u; i < MAX_TR; i++) {
        for (uint k = 0u; k < MAX_TC; k++) acc[i][k] = 0.0;
    }
    for (uint n = 0u; n < N; n++) {
        float xv[MAX_TC];
        for (uint k = 0u; k < MAX_TC; k++) xv[k] = k < TC ? x[pc.xo + n * C + cols[k]] : 0.0;
        for (uint i = 0u; i < MAX_TR; i++) {
            if (i < TR) {
                float d = dy[pc.dyo + n * R + rows[i]];
                for (uint k = 0u; k < MAX_TC; k++) {
                    if (k < TC) acc[i][k] = fma(d, xv[k], acc[i][k]);
                }
            }
        }
    }
    for (uint i = 0u; i < MAX_TR; i++) {
        for (uint k = 0u; k < MAX_TC; k++) {
            uint r = rb + i, c = cb + k * LC;
            if (i < TR && k < TC && r < R && c < C) {
                uint o = pc.dwo + r * C + c;
                float s = SCALE * acc[i][k];
                dw[o] = ACC != 0u ? dw[o] + s : s;
            }
        }
    }
}
