#version 450
// @variant attention_seq      PASS=0
// @variant attention_back_dq  PASS=1
// @variant attention_back_dkv PASS=2
// Causal grouped-query attention over one sequence of N tokens at positions 0..N-1 (training: no KV
// cache, everything recomputed), and its backward, FlashAttention-2 style. Query head h uses kv head
// h / G, G = HQ / HK. Key j is visible to query i iff lo(i) <= j <= i, lo(i) = WINDOW ? max(0, i+1-WINDOW)
// : 0 (shaders/attention.comp's convention, and transformers'). Scores, as the inference attention's:
//   s_ij = c(SCALE * q_i . k_j),  c(s) = SOFTCAP * tanh(s / SOFTCAP) if SOFTCAP > 0 else s
//   P_ij = exp(s_ij - lse_i),     lse_i = log sum_j exp(s_ij)
// attention_seq:      out_i = sum_j P_ij v_j, online softmax key by key; also writes lse_i
//   (the backward recomputes P from it).
//   Bindings: 0 out f32[N,HQ,D] (w), 1 lse f32[N,HQ] (w), 2 q f32[N,HQ,D] (r), 3 k, 4 v f32[N,HK,D] (r).
// attention_back_dq:  delta_i = dout_i . out_i;  dS_ij = P_ij (dout_i . v_j - delta_i) c'(s_ij);
//   dq_i = SCALE * sum_j dS_ij k_j;  writes delta_i for the dk/dv pass. c'(s) = 1 - (c(s) / SOFTCAP)^2.
//   Bindings: 0 dq f32[N,HQ,D] (w), 1 delta f32[N,HQ] (w), 2 q, 3 k, 4 v, 5 out, 6 lse, 7 dout (r).
//   These two: a thread per query row (token i, head h); a group takes WG consecutive rows (i, g) of one
//   kv head and stages TK keys and values at a time in shared memory (coalesced, shared by the group's
//   threads); q, dout and the accumulators stay in registers. Grid: HK * ceil(N*G / WG) groups.
// attention_back_dkv: dv_j = sum_{h of kv head} sum_i P_ij dout_i;  dk_j = SCALE * sum_h sum_i dS_ij q_i.
//   Bindings: 0 dk f32[N,HK,D] (w), 1 dv f32[N,HK,D] (w), 2 delta (r), 3 q, 4 k, 5 v, 6 lse, 7 dout (r).
//   A thread per key row j (one kv head); the group stages TK query rows (i, g) with their dout, lse and
//   delta at a time. Grid: HK * ceil(N / WG) groups.
// Every sum is one thread's, in a fixed order: deterministic, no float atomics. D % 4 == 0 (vec4 rows).
// The loops over a tile's rows are kept rolled ([[dont_unroll]]), those over a row's D/4 vec4s unrolled
// (registers): unrolling both took lavapipe 30-130 s to compile a pipeline, for no faster run.
// Twins: reference.attention_seq, reference.attention_back.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
layout(constant_id = 0) const uint WG = 32;
layout(constant_id = 1) const uint N = 1;          // tokens of the sequence
layout(constant_id = 2) const uint HQ = 1;
layout(constant_id = 3) const uint HK = 1;
layout(constant_id = 4) const uint D = 4;
layout(constant_id = 5) const float SCALE = 1.0;
layout(constant_id = 6) const uint WINDOW = 0;
layout(constant_id = 7) const float SOFTCAP = 0.0;
layout(constant_id = 8) const uint TK = 16;        // rows per shared-memory tile
layout(local_size_x_id = 0) in;
#if PASS == 0
layout(binding = 0) writeonly buffer Out { vec4 o[]; };
layout(binding = 1) writeonly buffer Lse { float lse[]; };
layout(binding = 2) readonly buffer Q { vec4 q[]; };
layout(binding = 3) readonly buffer K { vec4 k[]; };
layout(binding = 4) readonly buffer V { vec4 v[]; };
#elif PASS == 1
layout(binding = 0) writeonly buffer DQ { vec4 dq[]; };
layout(binding = 1) writeonly buffer Delta { float delta[]; };
layout(binding = 2) readonly buffer Q { vec4 q[]; };
layout(binding = 3) readonly buffer K { vec4 k[]; };
layout(binding = 4) readonly buffer V { vec4 v[]; };
layout(binding = 5) readonly buffer Out { vec4 o[]; };
layout(binding = 6) readonly buffer Lse { float lse[]; };
layout(binding = 7) readonly buffer DO { vec4 dout[]; };
#else
layout(binding = 0) writeonly buffer DK { vec4 dk[]; };
layout(binding = 1) writeonly buffer DV { vec4 dv[]; };
layout(binding = 2) readonly buffer Delta { float delta[]; };
layout(binding = 3) readonly buffer Q { vec4 q[]; };
layout(binding = 4) readonly buffer K { vec4 k[]; };
layout(binding = 5) readonly buffer V { vec4 v[]; };
layout(binding = 6) readonly buffer Lse { float lse[]; };
layout(binding = 7) readonly buffer DO { vec4 dout[]; };
#endif

const uint G = HQ / HK;
const uint D4 = D / 4u;
const float NEG = -1e30;
shared vec4 ta[TK * D4];   // tile: keys (passes 0, 1) or query rows (pass 2)
shared vec4 tb[TK * D4];   // tile: values (passes 0, 1) or dout rows (pass 2)
#if PASS == 2
shared float tl[TK];       // the tile's lse
shared float td[TK];       // the tile's delta
#endif

float cap(float s) {     // shaders/attention.comp's tanh form, so the scores match the inference's
    if (SOFTCAP > 0.0) {
        float x = clamp(s / SOFTCAP, -15.0, 15.0);
        s = SOFTCAP * (1.0 - 2.0 / (exp(2.0 * x) + 1.0));
    }
    return s;
}

float cap_grad(float c) {  // d c(s) / ds from the capped value
    if (SOFTCAP > 0.0) {
        float r = c / SOFTCAP;
        return 1.0 - r * r;
    }
    return 1.0;
}

uint window_lo(uint i) {
    return (WINDOW > 0u && i + 1u > WINDOW) ? i + 1u - WINDOW : 0u;
}

void main() {
    uint t = gl_LocalInvocationID.x;
    uint gid = flat_group_id();
    uint kh = gid % HK, blk = gid / HK;
#if PASS < 2
    // ---------------------------------------------------------------- a thread per query row (i, g)
    uint r0 = blk * WG, r = r0 + t;
    if (r0 >= N * G) return;                    // whole groups only: barriers below stay uniform
    bool live = r < N * G;
    uint i = live ? r / G : N - 1u, h = kh * G + (live ? r % G : 0u);
    uint row = i * HQ + h, lo = window_lo(i);
    uint j_begin = window_lo(r0 / G), j_end = min(N * G, r0 + WG) / G + (min(N * G, r0 + WG) % G != 0u ? 1u : 0u);
    vec4 qr[D4], acc[D4];
    for (uint d = 0u; d < D4; d++) { qr[d] = q[row * D4 + d]; acc[d] = vec4(0.0); }
  #if PASS == 1
    vec4 dr[D4];
    float di = 0.0;
    for (uint d = 0u; d < D4; d++) { dr[d] = dout[row * D4 + d]; di += dot(dr[d], o[row * D4 + d]); }
    float li = lse[row];
    if (live) delta[row] = di;
  #else
    float m = NEG, l = 0.0;
  #endif
    for (uint j0 = j_begin; j0 < j_end; j0 += TK) {
        barrier();                              // the previous tile has been read by every thread
        for (uint e = t; e < TK * D4; e += WG) {
            uint j = j0 + e / D4, src = (min(j, N - 1u) * HK + kh) * D4 + e % D4;
            ta[e] = j < N ? k[src] : vec4(0.0);
            tb[e] = j < N ? v[src] : vec4(0.0);
        }
        barrier();
  #if PASS == 0
        [[dont_unroll]] for (uint jj = 0u; jj < TK; jj++) {   // online softmax, one key at a time
            uint j = j0 + jj;
            float s = 0.0;
            for (uint d = 0u; d < D4; d++) s += dot(qr[d], ta[jj * D4 + d]);
            s = cap(SCALE * s);
            if (j <= i && j >= lo) {
                float mn = max(m, s), corr = exp(m - mn), p = exp(s - mn);
                l = l * corr + p;
                for (uint d = 0u; d < D4; d++) acc[d] = acc[d] * corr + p * tb[jj * D4 + d];
                m = mn;
            }
        }
  #else
        [[dont_unroll]] for (uint jj = 0u; jj < TK; jj++) {
            uint j = j0 + jj;
            float s = 0.0, dp = 0.0;
            for (uint d = 0u; d < D4; d++) { s += dot(qr[d], ta[jj * D4 + d]); dp += dot(dr[d], tb[jj * D4 + d]); }
            float c = cap(SCALE * s);
            float p = (j <= i && j >= lo) ? exp(c - li) : 0.0;
            float ds = p * (dp - di) * cap_grad(c);
            for (uint d = 0u; d < D4; d++) acc[d] += ds * ta[jj * D4 + d];
        }
  #endif
    }
    if (!live) return;
  #if PASS == 0
    float inv = 1.0 / l;
    for (uint d = 0u; d < D4; d++) o[row * D4 + d] = acc[d] * inv;
    lse[row] = m + log(l);
  #else
    for (uint d = 0u; d < D4; d++) dq[row * D4 + d] = SCALE * acc[d];
  #endif
#else
    // ---------------------------------------------------------------- a thread per key row j
    uint j_first = blk * WG, j = j_first + t;
    if (j_first >= N) return;
    bool live = j < N;
    uint jr = min(j, N - 1u);
    uint koff = (jr * HK + kh) * D4;
    uint j_last = min(N, j_first + WG) - 1u;
    uint i_end = WINDOW > 0u ? min(N, j_last + WINDOW) : N;     // queries j_first .. i_end-1 see some key
    vec4 kr[D4], vr[D4], ak[D4], av[D4];
    for (uint d = 0u; d < D4; d++) { kr[d] = k[koff + d]; vr[d] = v[koff + d]; ak[d] = vec4(0.0); av[d] = vec4(0.0); }
    for (uint r0 = j_first * G; r0 < i_end * G; r0 += TK) {     // query rows r = i * G + g of this kv head
        barrier();
        for (uint e = t; e < TK * D4; e += WG) {
            uint rr = min(r0 + e / D4, i_end * G - 1u);
            uint src = ((rr / G) * HQ + kh * G + rr % G) * D4 + e % D4;
            ta[e] = q[src];
            tb[e] = dout[src];
        }
        for (uint e = t; e < TK; e += WG) {
            uint rr = min(r0 + e, i_end * G - 1u);
            uint src = (rr / G) * HQ + kh * G + rr % G;
            tl[e] = lse[src];
            td[e] = delta[src];
        }
        barrier();
        [[dont_unroll]] for (uint ii = 0u; ii < TK; ii++) {
            uint i = (r0 + ii) / G;
            float s = 0.0, dp = 0.0;
            for (uint d = 0u; d < D4; d++) { s += dot(kr[d], ta[ii * D4 + d]); dp += dot(vr[d], tb[ii * D4 + d]); }
            float c = cap(SCALE * s);
            bool vis = r0 + ii < i_end * G && i >= jr && (WINDOW == 0u || i < jr + WINDOW);
            float p = vis ? exp(c - tl[ii]) : 0.0;
            float ds = p * (dp - td[ii]) * cap_grad(c);
            for (uint d = 0u; d < D4; d++) { ak[d] += ds * ta[ii * D4 + d]; av[d] += p * tb[ii * D4 + d]; }
        }
    }
    if (!live) return;
    for (uint d = 0u; d < D4; d++) { dk[koff + d] = SCALE * ak[d]; dv[koff + d] = av[d]; }
#endif
}
