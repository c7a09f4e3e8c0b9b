// Core of shaders/matvec.comp and shaders/matmul.comp (they differ only in launch shape):
//   o[n, ROW0 + r] = sum_c x[n, c] * W[wrow + r, c] (+ bias[boff + ROW0 + r])   r < ROWS, n < NTOK,
// for one weight part (ROWS rows of the layer starting at buffer row wrow). Twins: reference.matvec,
// reference.matmul.
// Defines (per variant): WFMT (weights.glsl), BIAS (0/1), and either
//   RUN = 32-column blocks per run (the unit of one scale load: q4_1 RUN words, q8_0/q4_0/iq4_nl RUN/2
//         words, so the scales come as one uint/uvec2/uvec4; f32/f16 use RUN=1), or
//   GENERIC = 1: any column count (f32/f16 rows that are not whole 16-byte words), one output per
//         invocation with scalar loads: correct everywhere, slow; for odd shapes only.
// Bindings: 0 o f32[NTOK, OUT_ROWS] (w), 1 wq quants of the part (r, uvec4[]; uint[] if GENERIC),
//   [2 ws scales of the part (r), q formats], then x f32[NTOK, COLS] (r), [then bias f32 (r)].
// Constants: WG, ROWS, COLS, NTOK, TN, CL, CPL, RPL, ROW0, OUT_ROWS, RC, EPS, OUT_MODE, D0, D1, GLU_ACT
//   (below). Push: wrow, boff
//   [, noff].
// Grid (RUN variants): ceil(ROWS / (RL * RPL)) * ceil(NTOK / TN) groups, flattened over x and y.
//   GENERIC: ceil(NTOK * ROWS / WG) groups.
//
// Why this work layout (RUN variants): lavapipe runs each invocation as one lane of an 8-wide SIMD
// program and turns every buffer load into a per-lane scalar loop (~40 instructions per lane for a
// uvec4, ~16 for a uint), so the cost is the number of (load instruction x lane), not bytes. The
// kernel therefore (1) loads every weight word exactly once as part of a uvec4 (scales as one
// vector per run), (2) keeps the activations it needs in registers, loaded once per work group and
// reused for all its rows, and (3) lets the 8 lanes of a load read neighbouring cache lines.
//   A group has WG = RL * CL lanes. Column lane c = lane % CL owns runs c, c + CL, c + 2*CL, ... of
//   every row (CPL of them; CL * CPL >= NB / RUN): the lanes of a row sweep it together, a 64-byte
//   line each at the best RUN. Row lane rl = lane / CL owns rows [rl*RPL, (rl+1)*RPL) of the group's
//   R = RL * RPL rows. Each lane holds x for its columns and TN tokens in registers: every loop that
//   indexes a register array has a constant trip count <= 32 and indexes with its own variable, so
//   Mesa unrolls it and the arrays stay registers / stack slots (LLVM's compile time grows with
//   the square of TN * CPL * RUN: the launcher keeps it small).
//   CL > 1: the CL partial sums of a row meet in shared memory, RC rows per lane at a time (a
//   barrier pair per RC rows; TN > 1 packs 4 tokens per vec4).
//   Group g: row group g % NRG, token tile g / NRG (tokens n0 .. n0+TN-1). Each weight word is read
//   once per token tile: matvec is TN = NTOK = 1, matmul tiles tokens.
//   SGR = 1 (the GPU tiling, `_sg` variants): the group is one team of CL = WG column lanes (RL = 1),
//   a whole number of subgroups. The CL partial sums of a row are added with subgroupAdd inside each
//   subgroup, then the gl_NumSubgroups subgroup sums meet in shared memory. Nothing depends on the
//   subgroup size or on which invocations form a subgroup, so it holds for any width (8 on lavapipe,
//   32 on NVIDIA and Apple, 64 on AMD's wave64, a size the compiler picks on Intel).
#ifndef SGR
  #define SGR 0
#endif
#if SGR
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#endif
layout(constant_id = 0) const uint WG = 8;
layout(constant_id = 1) const uint ROWS = 1;      // rows of this part
layout(constant_id = 2) const uint COLS = 32;
layout(constant_id = 3) const uint NTOK = 1;      // tokens (rows of x and o)
layout(constant_id = 4) const uint TN = 1;        // tokens per work group (register tile)
layout(constant_id = 5) const uint CL = 1;        // column lanes per row
layout(constant_id = 6) const uint CPL = 1;       // runs per column lane
layout(constant_id = 7) const uint RPL = 1;       // rows per row lane
layout(constant_id = 8) const uint ROW0 = 0;      // first output row of this part
layout(constant_id = 9) const uint OUT_ROWS = 1;  // rows of the whole matrix (stride of o)
layout(constant_id = 10) const uint RC = 1;       // CL > 1: rows per lane between two reductions
layout(local_size_x_id = 0) in;
layout(constant_id = 11) const float EPS = 1e-5;  // NORM: the folded RMSNorm's epsilon
// Output modes (one pipeline constant, so every format and tiling has them without new variants):
//   0: one output o f32[NTOK, OUT_ROWS].
//   1 (split): the matrix is several matrices stacked by rows (q, k, v of one layer): rows [0, D0)
//      go to o f32[NTOK, D0], [D0, D0+D1) to o1 f32[NTOK, D1], the rest to o2. One dispatch, one
//      weight sweep, three outputs. Twin: the stacked product's columns split.
//   2 (glu): the matrix is [gate; up] stacked (OUT_ROWS = 2F) and o f32[NTOK, F] = act(x·Wgᵀ)·(x·Wuᵀ)
//      (GLU_ACT: 0 silu, 1 gelu tanh; shaders/include/activation.glsl). Logical row 2p is gate row
//      p and 2p+1 up row p, so each pair meets in one lane (RPL even) or one reduction round (RC
//      even): the launcher guarantees both. The part must hold whole layers (ROW0 = 0).
//      Twin: swiglu/geglu of the two products.
// o1 and o2 are bound in every mode (to o itself when unused).
layout(constant_id = 12) const uint OUT_MODE = 0;
layout(constant_id = 13) const uint D0 = 0;
layout(constant_id = 14) const uint D1 = 0;
layout(constant_id = 15) const uint GLU_ACT = 0;
// XB > 0 (CL = 1 tilings, no SGR): the streaming loop nest. A lane takes its rows XB at a time and,
// run by run, fetches that run's activations and adds it into the XB rows' TN sums: it holds one
// run of x and XB x TN sums instead of the whole row of x for TN tokens, so a wide row keeps a wide
// token tile. The same operations in the same order per output as the preloading nest (XB = 0):
// the same bits.
layout(constant_id = 16) const uint XB = 0;
const uint XBS = XB > 0u ? XB : 1u;
// Set per dispatch, so that one pipeline serves every layer of a layer-stacked weight (engine/weights.py):
// wrow = first buffer row of this layer's rows in the part, boff = offset of this layer's bias
// (layer * OUT_ROWS for a stacked [L, OUT_ROWS] bias).
// NORM = 1 (`_norm` variants, RUN variants only): the RMSNorm that produces x is folded in. Every
// group recomputes the RMS of its tokens' rows of x itself (all lanes read the row once, lane 0
// adds the partial sums) and uses x·inv_rms·nw for x; noff = this layer's offset in the stacked
// norm weight nw f32[L, COLS] (binding after x). Twin: matmul(rmsnorm(x, nw), W).
#ifndef NORM
  #define NORM 0
#endif
#if NORM
layout(push_constant) uniform Push { uint wrow; uint boff; uint noff; } pc;
#else
layout(push_constant) uniform Push { uint wrow; uint boff; } pc;
#endif

// (binding numbers are literals: engine/shaders.py reads them from the preprocessed source)
#ifndef BIAS
  #define BIAS 0
#endif
#if WFMT >= 2
  #define X_BINDING 3
  #define NW_BINDING 4
  #if NORM
    #define BIAS_BINDING 5
    #if BIAS
      #define O1_BINDING 6
      #define O2_BINDING 7
    #else
      #define O1_BINDING 5
      #define O2_BINDING 6
    #endif
  #else
    #define BIAS_BINDING 4
    #if BIAS
      #define O1_BINDING 5
      #define O2_BINDING 6
    #else
      #define O1_BINDING 4
      #define O2_BINDING 5
    #endif
  #endif
#else
  #define X_BINDING 2
  #define NW_BINDING 3
  #if NORM
    #define BIAS_BINDING 4
    #if BIAS
      #define O1_BINDING 5
      #define O2_BINDING 6
    #else
      #define O1_BINDING 4
      #define O2_BINDING 5
    #endif
  #else
    #define BIAS_BINDING 3
    #if BIAS
      #define O1_BINDING 4
      #define O2_BINDING 5
    #else
      #define O1_BINDING 3
      #define O2_BINDING 4
    #endif
  #endif
#endif

#ifndef RES
  #define RES 0
#endif
#if RES
// RES = 1 (`_res` variants): the residual add in the epilogue, o += x·Wᵀ (+ b), in place: each
// output element is read and written by the one invocation that computes it. Twin: x + matmul.
// (Output mode 0 only.)
layout(binding = 0) buffer Out { float o[]; };
#else
layout(binding = 0) writeonly buffer Out { float o[]; };
#endif
layout(binding = O1_BINDING) writeonly buffer Out1 { float o1[]; };
layout(binding = O2_BINDING) writeonly buffer Out2 { float o2[]; };
#include "activation.glsl"

// Output of token n, matrix row r (ROW0 + the part's row), in output modes 0 and 1.
void store(uint n, uint r, float v) {
    if (OUT_MODE == 1u) {
        if (r < D0) o[n * D0 + r] = v;
        else if (r < D0 + D1) o1[n * D1 + (r - D0)] = v;
        else o2[n * (OUT_ROWS - D0 - D1) + (r - D0 - D1)] = v;
        return;
    }
#if RES
    o[n * OUT_ROWS + r] = o[n * OUT_ROWS + r] + v;
#else
    o[n * OUT_ROWS + r] = v;
#endif
}

// Output mode 2: the pair p of token n (gate sum g, up sum u).
void store_glu(uint n, uint p, float g, float u) {
    o[n * (OUT_ROWS / 2u) + p] = activation(GLU_ACT, g) * u;
}

// Weight row of logical row r of the part (mode 2 interleaves gate and up rows; see above).
uint weight_row(uint r) {
    return OUT_MODE == 2u ? (r & 1u) * (ROWS / 2u) + (r >> 1) : r;
}

#ifdef GENERIC
// ---------------------------------------------------------------------------------------------
layout(binding = 1) readonly buffer WQ { uint wq[]; };
#if WFMT >= 2
layout(binding = 2) readonly buffer WS { uint ws[]; };
#endif
layout(binding = X_BINDING) readonly buffer X { float x[]; };
#if BIAS
layout(binding = BIAS_BINDING) readonly buffer Bias { float bias[]; };
#endif
#include "weights.glsl"

void main() {
    uint i = gl_GlobalInvocationID.x + gl_GlobalInvocationID.y * gl_NumWorkGroups.x * WG;
    if (OUT_MODE == 2u) {   // one (gate, up) pair per invocation
        uint F = ROWS / 2u;
        if (i >= NTOK * F) return;
        uint n = i / F, p = i % F;
        float g = 0.0, u = 0.0;
        for (uint c = 0; c < COLS; c++) {
            g = fma(weight_at(pc.wrow + p, c), x[n * COLS + c], g);
            u = fma(weight_at(pc.wrow + F + p, c), x[n * COLS + c], u);
        }
        store_glu(n, p, g, u);
        return;
    }
    if (i >= NTOK * ROWS) return;
    uint n = i / ROWS, r = i % ROWS;
    float acc = 0.0;
    for (uint c = 0; c < COLS; c++) acc = fma(weight_at(pc.wrow + r, c), x[n * COLS + c], acc);
#if BIAS
    acc += bias[pc.boff + ROW0 + r];
#endif
    store(n, ROW0 + r, acc);
}

#else
// ---------------------------------------------------------------------------------------------
#define WEIGHTS_NO_SCALAR
#include "weights.glsl"
#if WFMT == FMT_Q4_1 || WFMT == FMT_Q5_1
  #define SCALE_WORDS RUN
#elif WFMT == FMT_Q4_K || WFMT == FMT_Q5_K
  #define SCALE_WORDS 4                   // the super-block's head (RUN <= 8: a run is in one super-block)
#elif WFMT == FMT_Q6_K
  #define SCALE_WORDS 1                   // the word holding the super-block's f16 d
#elif WFMT == FMT_IQ4_XS
  #define SCALE_WORDS 2                   // the super-block's head (RUN <= 8: a run is in one super-block)
#elif WFMT == FMT_Q2_K
  #define SCALE_WORDS 1                   // d | dmin << 16 of the super-block
#elif WFMT == FMT_Q3_K
  #define SCALE_WORDS 1                   // uint[]: the 4 words holding the super-block's 14 bytes, loaded apart
#elif WFMT >= 2
  #define SCALE_WORDS (RUN / 2)
#else
  #define SCALE_WORDS 0
#endif
#if SCALE_WORDS == 4
  #define SVEC uvec4
#elif SCALE_WORDS == 2
  #define SVEC uvec2
#else
  #define SVEC uint
#endif
#ifndef TEXEL
  #define TEXEL 0
#endif
#if TEXEL
// TEXEL = 1 (`_tx` variants): the quants, scales and x are bound as texel buffers (tools/kp/patches/
// 0008) and fetched whole: lavapipe runs a storage-buffer load as a scalar loop over its SIMD lanes
// (a bounds check, a load and an insert per component and lane), a texel fetch as one gather (a 48 MB
// reduction: 2.1 ms against 9.1). Same arithmetic, same results.
layout(binding = 1) uniform usamplerBuffer wq4_t;
  #define WQ4(i) texelFetch(wq4_t, int(i))
  #if WFMT >= 2
    #if SCALE_WORDS == 4
layout(binding = 2) uniform usamplerBuffer ws_t;
      #define WS(i) texelFetch(ws_t, int(i))
    #elif SCALE_WORDS == 2
layout(binding = 2, rg32ui) uniform readonly uimageBuffer ws_t;
      #define WS(i) imageLoad(ws_t, int(i)).xy
    #else
layout(binding = 2, r32ui) uniform readonly uimageBuffer ws_t;
      #define WS(i) imageLoad(ws_t, int(i)).x
    #endif
  #endif
layout(binding = X_BINDING) uniform samplerBuffer x4_t;
  #define X4(i) texelFetch(x4_t, int(i))
#else
layout(binding = 1) readonly buffer WQ { uvec4 wq4[]; };
  #define WQ4(i) wq4[i]
  #if WFMT >= 2
layout(binding = 2) readonly buffer WS { SVEC ws[]; };
    #define WS(i) ws[i]
  #endif
layout(binding = X_BINDING) readonly buffer X { vec4 x4[]; };
  #define X4(i) x4[i]
#endif
#if NORM
  #if TEXEL
layout(binding = NW_BINDING) uniform samplerBuffer nw4_t;
    #define NW4(i) texelFetch(nw4_t, int(i))
  #else
layout(binding = NW_BINDING) readonly buffer NW { vec4 nw4[]; };
    #define NW4(i) nw4[i]
  #endif
shared float nred[NORM != 0 ? WG : 1u];
shared float ninv[NORM != 0 ? TN : 1u];
#endif
#if BIAS
layout(binding = BIAS_BINDING) readonly buffer Bias { float bias[]; };
#endif

const uint NB = COLS / 32u;               // blocks per row
const uint NRUN = NB / RUN;
const uint RL = WG / CL;                  // row lanes
const uint R = RL * RPL;                  // rows per group
const uint NRG = (ROWS + R - 1u) / R;     // row groups
const bool ALL_RUNS = CL * CPL == NRUN;   // no column lane has spare runs
#if WFMT == FMT_F32
const uint U4 = 8u;                       // uvec4 words per block
#elif WFMT == FMT_F16
const uint U4 = 4u;
#elif WFMT == FMT_Q8_0
const uint U4 = 2u;
#else
const uint U4 = 1u;
#endif
const uint TV = (TN + 3u) / 4u;            // vec4s holding one row's TN partial sums
// Partial sums of the CL column lanes (CL > 1): one float per row (TN = 1) or TV vec4s per row
// (TN > 1: a quarter of the shared-memory stores and loads of one float per token).
shared float red[CL > 1u && TN == 1u ? RL * RC * CL : 1u];
shared vec4 red4[CL > 1u && TN > 1u ? RL * RC * TV * CL : 1u];

// (d, m) of block b of a run whose first flat block is fb0 and whose scales are s (q6_k: (d, 0); its
// int8 sub-block scales are applied in the block loop; q2_k: (d, dmin), q3_k: unused, both per
// 16-weight sub-block in the block loop).
#if WFMT == FMT_Q3_K
  #define SC_T uvec4                      // q3k_head: the super-block's 14 bytes
#else
  #define SC_T SVEC
#endif
vec2 run_scale(SC_T s, uint b, uint fb0) {
#if WFMT == FMT_Q2_K
    return unpackHalf2x16(s);
#elif WFMT == FMT_Q3_K
    return vec2(0.0);
#elif WFMT == FMT_Q4_K || WFMT == FMT_Q5_K
    // runs are aligned to RUN inside a super-block: for RUN >= 4 the byte lane is the constant b & 3,
    // and for RUN 8 (the whole super-block) the sub-block is b itself
  #if RUN >= 8
    return k_scale_min_at(s, b);
  #else
    return k_scale_min(s, RUN >= 4 ? (b & 3u) : ((fb0 + b) & 3u), ((fb0 + b) >> 2) & 1u);
  #endif
#elif WFMT == FMT_IQ4_XS
    return vec2(iq4xs_scale(s, RUN >= 8 ? b : ((fb0 + b) & 7u)), 0.0);
#elif WFMT == FMT_Q6_K
    return vec2(unpackHalf2x16(((fb0 >> 3) & 1u) == 0u ? s : s >> 16).x, 0.0);
#elif WFMT == FMT_Q4_1 || WFMT == FMT_Q5_1
  #if RUN == 1
    return unpackHalf2x16(s);
  #else
    return unpackHalf2x16(s[b]);
  #endif
#elif WFMT >= 2
  #if RUN == 1
    return vec2(unpackHalf2x16((fb0 & 1u) == 0u ? s : s >> 16).x, 0.0);
  #elif RUN == 2
    return vec2(unpackHalf2x16(b == 0u ? s : s >> 16).x, 0.0);
  #else
    return vec2(unpackHalf2x16((b & 1u) == 0u ? s[b >> 1] : s[b >> 1] >> 16).x, 0.0);
  #endif
#else
    return vec2(1.0, 0.0);
#endif
}

float bias_of(uint row) {
#if BIAS
    return bias[pc.boff + ROW0 + row];
#else
    return 0.0;
#endif
}

void main() {
    uint l = gl_LocalInvocationID.x;
    uint c = l % CL, rl = l / CL;
    uint g = gl_WorkGroupID.x + gl_WorkGroupID.y * gl_NumWorkGroups.x;
    uint rg = g % NRG, n0 = (g / NRG) * TN;
    if (n0 >= NTOK) return;   // whole group: the grid may round up

#if NORM
    // 1 / RMS of each of the group's token rows (uniform control flow: every lane takes part).
    for (uint t = 0; t < TN; t++) {
        float q = 0.0;
        if (n0 + t < NTOK)
            for (uint i4 = l; i4 < COLS / 4u; i4 += WG) { vec4 v = X4((n0 + t) * (COLS / 4u) + i4); q += dot(v, v); }
        nred[l] = q;
        barrier();
        if (l == 0u) {
            float sum = 0.0;
            for (uint j = 0; j < WG; j++) sum += nred[j];
            ninv[t] = inversesqrt(sum / float(COLS) + EPS);
        }
        barrier();
    }
#endif

    if (XB > 0u) {   // the streaming nest (the launcher guarantees CL = 1; GLU: XB and RPL even)
#define XR(t, i, b) xrs[t][b]
#define XS(t, i, b) xss[t][b]
#define XQ(t, i, b) xqs[t][b]
#define ACC(t) accs[jj][t]
        for (uint j0 = 0; j0 < RPL; j0 += XBS) {
            float accs[XBS][TN];
            for (uint jj = 0; jj < XBS; jj++)
                for (uint t = 0; t < TN; t++) accs[jj][t] = 0.0;
            for (uint i = 0; i < CPL; i++) {
                uint run = i;
                vec4 xrs[TN][RUN][8];
                float xss[TN][RUN];
  #if WFMT == FMT_Q6_K || WFMT_K23
                float xqs[TN][RUN];
  #endif
                for (uint t = 0; t < TN; t++) {
#include "matmul_xload.glsl"
                }
                for (uint jj = 0; jj < XBS; jj++) {
                    uint j = j0 + jj;
                    uint row = j < RPL ? rg * R + rl * RPL + j : ROWS;
                    bool live = row < ROWS && g < gl_NumWorkGroups.x * gl_NumWorkGroups.y;   // (as below)
                    if (live && (ALL_RUNS || run < NRUN)) {
#include "matmul_run.glsl"
                    }
                }
            }
            for (uint jj = 0; jj < XBS; jj++) {
                uint j = j0 + jj;
                uint row = j < RPL ? rg * R + rl * RPL + j : ROWS;
                if (row >= ROWS) continue;
                if (OUT_MODE == 2u) {   // the pair's gate row is jj - 1 (XB even, rows in pairs)
                    if ((jj & 1u) == 1u)
                        for (uint t = 0; t < TN; t++)
                            if (n0 + t < NTOK) store_glu(n0 + t, row >> 1, accs[jj - 1u][t], accs[jj][t]);
                } else {
                    float bv = bias_of(row);
                    for (uint t = 0; t < TN; t++)
                        if (n0 + t < NTOK) store(n0 + t, ROW0 + row, accs[jj][t] + bv);
                }
            }
        }
        return;
#undef XR
#undef XS
#undef XQ
#undef ACC
    }
#define XR(t, i, b) xr[t][i][b]
#define XS(t, i, b) xs[t][i][b]
#define XQ(t, i, b) xq[t][i][b]
#define ACC(t) acc[t]

    // Activations of this lane's columns for the group's tokens, kept for all its rows.
    vec4 xr[TN][CPL][RUN][8];
    float xs[TN][CPL][RUN];    // per-block sums of x (q4_0: the -8 offset, q4_1: the minimum m)
#if WFMT == FMT_Q6_K || WFMT_K23
    float xq[TN][CPL][RUN];    // q6_k, q2_k, q3_k: sums of each block's first 16 x (xs: of its last 16)
#endif
    for (uint t = 0; t < TN; t++) {
        for (uint i = 0; i < CPL; i++) {
            uint run = c + i * CL;
#include "matmul_xload.glsl"
        }
    }

    float gsum[TV * 4u];   // output mode 2, CL = 1: the gate sums of the pair being computed
    for (uint j0 = 0; j0 < RPL; j0 += RC) {     // rounds of RC rows per lane
        for (uint jj = 0; jj < RC; jj++) {
            uint j = j0 + jj;
            uint rr = rl * RPL + j;
            uint row = j < RPL ? rg * R + rr : ROWS;
            float acc[TV * 4u];   // (padded to whole vec4s)
            for (uint t = 0; t < TV * 4u; t++) acc[t] = 0.0;
            // `live` is always true when row < ROWS, but the compiler must not prove it: with the
            // branch folded away lavapipe's code for this loop grows and runs several times slower.
            bool live = row < ROWS && g < gl_NumWorkGroups.x * gl_NumWorkGroups.y;
            if (live) {
                for (uint i = 0; i < CPL; i++) {
                    uint run = c + i * CL;
                    if (ALL_RUNS || run < NRUN) {
#include "matmul_run.glsl"
                    }
                }
            }
#if SGR
            // Every invocation of the group reaches this point for every jj (uniform control flow).
            if (TN == 1u) {
                float s = subgroupAdd(acc[0]);
                if (subgroupElect()) red[jj * CL + gl_SubgroupID] = s;
            } else {
                for (uint v = 0; v < TV; v++) {
                    vec4 s = subgroupAdd(vec4(acc[4u * v], acc[4u * v + 1u], acc[4u * v + 2u], acc[4u * v + 3u]));
                    if (subgroupElect()) red4[(jj * TV + v) * CL + gl_SubgroupID] = s;
                }
            }
#else
            if (CL > 1u && TN == 1u) {
                red[(rl * RC + jj) * CL + c] = acc[0];
            } else if (CL > 1u) {
                for (uint v = 0; v < TV; v++)
                    red4[((rl * RC + jj) * TV + v) * CL + c] = vec4(acc[4u * v], acc[4u * v + 1u], acc[4u * v + 2u], acc[4u * v + 3u]);
            } else if (row < ROWS && OUT_MODE == 2u) {   // RPL even: the pair's gate row came just before
                if ((j & 1u) == 0u) {
                    for (uint t = 0; t < TV * 4u; t++) gsum[t] = acc[t];
                } else {
                    for (uint t = 0; t < TN; t++)
                        if (n0 + t < NTOK) store_glu(n0 + t, row >> 1, gsum[t], acc[t]);
                }
            } else if (row < ROWS) {
                float bv = bias_of(row);
                for (uint t = 0; t < TN; t++)
                    if (n0 + t < NTOK) store(n0 + t, ROW0 + row, acc[t] + bv);
            }
#endif
        }
#if SGR
        uint NPART = gl_NumSubgroups;   // one partial sum per subgroup
#else
        uint NPART = CL;                // one partial sum per column lane
#endif
        if (CL > 1u && OUT_MODE == 2u) {   // pairs of rows (RC even): act(gate)·up
            barrier();
            uint HRC = RC / 2u;
            for (uint q = l; q < RL * HRC * TV; q += WG) {
                uint v = q % TV, jj = 2u * ((q / TV) % HRC), rl2 = q / (TV * HRC);
                uint j = j0 + jj, row = rg * R + rl2 * RPL + j;
                uint qg = (rl2 * RC + jj) * TV + v, qu = qg + TV;   // slots of the gate and up rows
                if (j < RPL && row < ROWS) {
                    if (TN == 1u) {
                        float g = 0.0, u = 0.0;
                        for (uint k = 0; k < NPART; k++) { g += red[qg * CL + k]; u += red[qu * CL + k]; }
                        if (n0 < NTOK) store_glu(n0, row >> 1, g, u);
                    } else {
                        vec4 g = vec4(0.0), u = vec4(0.0);
                        for (uint k = 0; k < NPART; k++) { g += red4[qg * CL + k]; u += red4[qu * CL + k]; }
                        for (uint e = 0; e < 4; e++) {
                            uint t = 4u * v + e;
                            if (t < TN && n0 + t < NTOK) store_glu(n0 + t, row >> 1, g[e], u[e]);
                        }
                    }
                }
            }
            barrier();
        } else if (CL > 1u) {   // sum the partials of the last RC rows of every row lane
            barrier();
            for (uint q = l; q < RL * RC * TV; q += WG) {
                uint v = q % TV, jj = (q / TV) % RC, rl2 = q / (TV * RC);
                uint j = j0 + jj, row = rg * R + rl2 * RPL + j;
                if (j < RPL && row < ROWS) {
                    float bv = bias_of(row);
                    if (TN == 1u) {
                        float s = 0.0;
                        for (uint k = 0; k < NPART; k++) s += red[q * CL + k];
                        if (n0 < NTOK) store(n0, ROW0 + row, s + bv);
                    } else {
                        vec4 s = vec4(0.0);
                        for (uint k = 0; k < NPART; k++) s += red4[q * CL + k];
                        for (uint e = 0; e < 4; e++) {
                            uint t = 4u * v + e;
                            if (t < TN && n0 + t < NTOK) store(n0 + t, ROW0 + row, s[e] + bv);
                        }
                    }
                }
            }
            barrier();
        }
    }
}
#endif
