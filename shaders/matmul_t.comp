#version 450
// @variant matmul_t_f32   WFMT=0
// @variant matmul_t_f16   WFMT=1
// @variant matmul_t_q8_0  WFMT=2
// @variant matmul_t_q4_0  WFMT=3
// @variant matmul_t_q4_1  WFMT=4
// @variant matmul_t_q5_0  WFMT=5
// @variant matmul_t_q5_1  WFMT=6
// @variant matmul_t_q4_k  WFMT=7
// @variant matmul_t_q5_k  WFMT=8
// @variant matmul_t_q6_k  WFMT=9
// matmul_t: the backward of x·Wᵀ through a frozen weight, for NR rows of one weight part:
//   dx[n, c] (+)= sum_{r < NR} dy[n, DY0 + r] * W[wrow + r, c]      n < NTOK, c < COLS
// (wrow: buffer row of the first summed row in the part, layer offset included). Twin:
// reference.matmul_t (the same decoded weights, float64).
// Bindings: 0 dx f32[NTOK, COLS] (rw: ACC=1 adds to it), 1 wq quants of the part (r),
//   [2 ws scales of the part (r), q formats], then dy f32[NTOK, DYS] (r).
// Constants: WG (= row lanes), COLS, NTOK, TN (tokens per group), NR, DYS (dy's row stride),
//   DY0 (dy's column of the first summed row), ACC (0: dx =, 1: dx +=).  Push: wrow.
// Grid: ceil(COLS / 32) * ceil(NTOK / TN) groups, flattened over x and y.
//
// Work split: group g owns the 32 columns of block g % NCB and tokens [t*TN, t*TN + TN) of tile
// t = g / NCB, i.e. an output tile no other group writes (no atomics, no ordering between groups).
// Its WG lanes split the rows: lane l sums rows l, l + WG, l + 2 WG, ... into TN x 32 registers
// (each row: 32 weights decoded once with weight_at -- loads of one word or one scale CSE to one
// -- times TN dy values), then the WG partial tiles meet in shared memory and lane l adds, in lane
// order, the elements l, l + WG, ... of the tile: the sum order is fixed, so results are
// deterministic. Several weight parts are several dispatches, each adding to dx (ACC = 1 after the
// first), ordered by the recorder's barriers (dx is rw).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(constant_id = 0) const uint WG = 8;
layout(constant_id = 1) const uint COLS = 32;
layout(constant_id = 2) const uint NTOK = 1;
layout(constant_id = 3) const uint TN = 1;
layout(constant_id = 4) const uint NR = 1;
layout(constant_id = 5) const uint DYS = 1;
layout(constant_id = 6) const uint DY0 = 0;
layout(constant_id = 7) const uint ACC = 0;
layout(local_size_x_id = 0) in;
layout(push_constant) uniform Push { uint wrow; } pc;

layout(binding = 0) buffer DX { float dx[]; };
layout(binding = 1) readonly buffer WQ { uint wq[]; };
#if WFMT >= 2
layout(binding = 2) readonly buffer WS { uint ws[]; };
layout(binding = 3) readonly buffer DY { float dy[]; };
#else
layout(binding = 2) readonly buffer DY { float dy[]; };
#endif
#include "weights.glsl"

#define MAX_TN 8u
#define TILE (MAX_TN * 32u)
// WG * TN * 32 floats; the launcher keeps WG * TN <= 128 (16 KiB)
shared float red[128u * 32u];

void main() {
    const uint NCB = (COLS + 31u) / 32u;
    uint g = flat_group_id(), lane = gl_LocalInvocationID.x;
    uint c0 = (g % NCB) * 32u, n0 = (g / NCB) * TN;
    float acc[TILE];
    for (uint e = 0u; e < TILE; e++) acc[e] = 0.0;
    for (uint r = lane; r < NR; r += WG) {
        uint row = pc.wrow + r;
        float w[32];
        for (uint j = 0u; j < 32u; j++) {
#if WFMT <= 1
            w[j] = c0 + j < COLS ? weight_at(row, c0 + j) : 0.0;   // f32/f16 rows of any width
#else
            w[j] = weight_at(row, c0 + j);                         // whole 32-column blocks
#endif
        }
        for (uint t = 0u; t < MAX_TN; t++) {
            if (t < TN) {
                float d = dy[min(n0 + t, NTOK - 1u) * DYS + DY0 + r];   // a missing token's tile row is discarded
                for (uint j = 0u; j < 32u; j++) acc[t * 32u + j] = fma(d, w[j], acc[t * 32u + j]);
            }
        }
    }
    for (uint t = 0u; t < MAX_TN; t++) {
        if (t < TN) {
            for (uint j = 0u; j < 32u; j++) red[(lane * TN + t) * 32u + j] = acc[t * 32u + j];
        }
    }
    barrier();
    for (uint e = lane; e < TN * 32u; e += WG) {
        uint t = e / 32u, j = e % 32u, n = n0 + t, c = c0 + j;
        float s = 0.0;
        for (uint l = 0u; l < WG; l++) s += red[l * TN * 32u + e];
        if (n < NTOK && c < COLS) {
            uint o = n * COLS + c;
            dx[o] = ACC != 0u ? dx[o] + s : s;
        }
    }
}
