#version 450
// @variant rmsnorm_back           KIND=0 ACC=0 RSTD=0
// @variant rmsnorm_back_acc       KIND=0 ACC=1 RSTD=0
// @variant rmsnorm_back_rstd      KIND=0 ACC=0 RSTD=1
// @variant rmsnorm_back_acc_rstd  KIND=0 ACC=1 RSTD=1
// @variant rmsnorm_dweight        KIND=1 ACC=0
// @variant rmsnorm_dweight_acc    KIND=1 ACC=1
// Backward of RMSNorm y[r,i] = x[r,i] * rs_r * w[i], rs_r = 1 / sqrt(mean_i(x[r,:]^2) + EPS):
//   rmsnorm_back:    g = dy * w;  dx[r,i] (+)= rs_r * g[r,i] - rs_r^3 * x[r,i] * sum_i(g[r,:] * x[r,:]) / DIM
//                    (_acc adds into dx: the residual stream's gradient; _rstd also writes rs_r to rstd[r],
//                    which rmsnorm_dweight reads)
//   rmsnorm_dweight: dw[i] (+)= sum_r dy[r,i] * x[r,i] * rstd[r]   (the weight's gradient, summed over rows
//                    by one work-group per column in a fixed tree: deterministic, no float atomics)
// Bindings, back:    0 dx f32[ROWS,DIM] (w; rw with _acc), 1 x f32[ROWS,DIM] (r), 2 w f32[L,DIM] (r),
//                    3 dy f32[ROWS,DIM] (r) [, 4 rstd f32[ROWS] (w)].   Grid: ROWS groups (one per row).
//           dweight: 0 dw f32[L,DIM] (w; rw with _acc), 1 x (r), 2 dy (r), 3 rstd f32[ROWS] (r).
//                    Grid: DIM groups (one per column).
// Push: woff = offset of this layer's weights (w or dw stacks layers [L, DIM]).
// qk_norm: x [T, H, head_dim] is ROWS = T*H rows of DIM = head_dim, all sharing one w.
// Twin: reference.rmsnorm_back.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint DIM = 1;
layout(constant_id = 2) const uint ROWS = 1;
layout(constant_id = 3) const float EPS = 1e-5;
layout(local_size_x_id = 0) in;
layout(push_constant) uniform Push { uint woff; } pc;
#if KIND == 0
  #if ACC
layout(binding = 0) buffer DX { float dx[]; };
  #else
layout(binding = 0) writeonly buffer DX { float dx[]; };
  #endif
layout(binding = 1) readonly buffer X { float x[]; };
layout(binding = 2) readonly buffer W { float w[]; };
layout(binding = 3) readonly buffer DY { float dy[]; };
  #if RSTD
layout(binding = 4) writeonly buffer RS { float rstd[]; };
  #endif
#else
  #if ACC
layout(binding = 0) buffer DW { float dw[]; };
  #else
layout(binding = 0) writeonly buffer DW { float dw[]; };
  #endif
layout(binding = 1) readonly buffer X { float x[]; };
layout(binding = 2) readonly buffer DY { float dy[]; };
layout(binding = 3) readonly buffer RS { float rstd[]; };
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
    uint t = gl_LocalInvocationID.x;
#if KIND == 0
    uint row = flat_group_id();
    if (row >= ROWS) return;
    uint base = row * DIM;
    float q = 0.0, c = 0.0;
    for (uint i = t; i < DIM; i += WG) {
        float v = x[base + i];
        q += v * v;
        c += dy[base + i] * w[pc.woff + i] * v;
    }
    float rs = inversesqrt(block_sum(q) / float(DIM) + EPS);
    float k = rs * rs * rs * block_sum(c) / float(DIM);
    for (uint i = t; i < DIM; i += WG) {
        float g = rs * dy[base + i] * w[pc.woff + i] - k * x[base + i];
  #if ACC
        dx[base + i] += g;
  #else
        dx[base + i] = g;
  #endif
    }
  #if RSTD
    if (t == 0u) rstd[row] = rs;
  #endif
#else
    uint col = flat_group_id();
    if (col >= DIM) return;
    float s = 0.0;
    for (uint r = t; r < ROWS; r += WG) s += dy[r * DIM + col] * x[r * DIM + col] * rstd[r];
    s = block_sum(s);
    if (t == 0u) {
  #if ACC
        dw[pc.woff + col] += s;
  #else
        dw[pc.woff + col] = s;
  #endif
    }
#endif
}
