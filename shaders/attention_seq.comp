#version 450
// @variant attention_seq      PASS=0
// @variant attention_back_dq  PASS=1
// @variant attention_back_dkv PASS=2
// Causal grouped-query attention over one sequence of N tokens at positions 0..N-1 (training: no KV
// cache, everything recomputed), and its backward, FlashAttention-2 style. Query head h uses kv head
// h / G, G = HQ / HK. Key j is visible to query i iff lo(i) <= j <= i, lo(i) = WINDOW ? max(0, i+1-WINDOW)
// : 0 (shaders/attention.comp's convention). Scores, as the inference attention computes them:
//   s_ij = c(SCALE * q_i . k_j),  c(s) = SOFTCAP * tanh(s / SOFTCAP) if SOFTCAP > 0 else s
//   P_ij = exp(s_ij - lse_i),     lse_i = log sum_j exp(s_ij)
// attention_seq:      out_i = sum_j P_ij v_j; also writes lse_i (the backward recomputes P from it).
//   Bindings: 0 out f32[N,HQ,D] (w), 1 lse f32[N,HQ] (w), 2 q f32[N,HQ,D] (r), 3 k, 4 v f32[N,HK,D] (r).
//   Grid: N*HQ groups, one per (query row, head): the group's threads split the keys for the scores
//   (kept in shared memory), then the dims for the output.
// attention_back_dq:  delta_i = dout_i . out_i;  dS_ij = P_ij (dout_i . v_j - delta_i) c'(s);
//   dq_i = SCALE * sum_j dS_ij k_j;  writes delta_i for the dk/dv pass. c'(s) = 1 - (s / SOFTCAP)^2.
//   Bindings: 0 dq f32[N,HQ,D] (w), 1 delta f32[N,HQ] (w), 2 q, 3 k, 4 v, 5 out, 6 lse, 7 dout (r).
//   Grid: N*HQ groups, one per (query row, head).
// attention_back_dkv: dv_j = sum_{h in group} sum_i P_ij dout_i;  dk_j = SCALE * sum_h sum_i dS_ij q_i.
//   Bindings: 0 dk f32[N,HK,D] (w), 1 dv f32[N,HK,D] (w), 2 delta (r), 3 q, 4 k, 5 v, 6 lse, 7 dout (r).
//   Grid: N*HK groups, one per (key row, kv head), looping over the G query heads and the queries that
//   see key j. Every sum is taken by one thread in a fixed order (or a fixed tree): deterministic,
//   no float atomics. Shared memory: (N + 2D + WG) floats, (2N + 4D + WG) for dkv.
// Twins: reference.attention_seq, reference.attention_back.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint N = 1;          // tokens of the sequence
layout(constant_id = 2) const uint HQ = 1;
layout(constant_id = 3) const uint HK = 1;
layout(constant_id = 4) const uint D = 1;
layout(constant_id = 5) const float SCALE = 1.0;
layout(constant_id = 6) const uint WINDOW = 0;
layout(constant_id = 7) const float SOFTCAP = 0.0;
layout(local_size_x_id = 0) in;
#if PASS == 0
layout(binding = 0) writeonly buffer Out { float o[]; };
layout(binding = 1) writeonly buffer Lse { float lse[]; };
layout(binding = 2) readonly buffer Q { float q[]; };
layout(binding = 3) readonly buffer K { float k[]; };
layout(binding = 4) readonly buffer V { float v[]; };
#elif PASS == 1
layout(binding = 0) writeonly buffer DQ { float dq[]; };
layout(binding = 1) writeonly buffer Delta { float delta[]; };
layout(binding = 2) readonly buffer Q { float q[]; };
layout(binding = 3) readonly buffer K { float k[]; };
layout(binding = 4) readonly buffer V { float v[]; };
layout(binding = 5) readonly buffer Out { float o[]; };
layout(binding = 6) readonly buffer Lse { float lse[]; };
layout(binding = 7) readonly buffer DO { float dout[]; };
#else
layout(binding = 0) writeonly buffer DK { float dk[]; };
layout(binding = 1) writeonly buffer DV { float dv[]; };
layout(binding = 2) readonly buffer Delta { float delta[]; };
layout(binding = 3) readonly buffer Q { float q[]; };
layout(binding = 4) readonly buffer K { float k[]; };
layout(binding = 5) readonly buffer V { float v[]; };
layout(binding = 6) readonly buffer Lse { float lse[]; };
layout(binding = 7) readonly buffer DO { float dout[]; };
#endif

const uint G = HQ / HK;
const float NEG = -1e30;
shared float red[WG];
shared float a_s[D];     // the group's own row: q_i (passes 0, 1) or k_j (pass 2)
shared float b_s[D];     // dout_i (pass 1) or v_j (pass 2)
shared float p_s[N];     // per visible key (query): scores, P or dS
#if PASS == 2
shared float ds_s[N];
shared float acck[D];
shared float accv[D];
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

float block_sum(float x) {
    uint t = gl_LocalInvocationID.x;
    red[t] = x;
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1) {
        if (t < s) red[t] += red[t + s];
        barrier();
    }
    float r = red[0];
    barrier();
    return r;
}

float block_max(float x) {
    uint t = gl_LocalInvocationID.x;
    red[t] = x;
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1) {
        if (t < s) red[t] = max(red[t], red[t + s]);
        barrier();
    }
    float r = red[0];
    barrier();
    return r;
}

// dot of shared row a_s (or b_s) with a global row
#define DOT(S, BUF, OFF, R) { R = 0.0; for (uint d_ = 0u; d_ < D; d_++) R += S[d_] * BUF[(OFF) + d_]; }

void main() {
    uint t = gl_LocalInvocationID.x;
    uint gid = flat_group_id();
#if PASS < 2
    if (gid >= N * HQ) return;
    uint i = gid / HQ, h = gid % HQ, kh = h / G;
    uint qoff = gid * D;
    for (uint d = t; d < D; d += WG) {
        a_s[d] = q[qoff + d];
  #if PASS == 1
        b_s[d] = dout[qoff + d];
  #endif
    }
  #if PASS == 1
    float dd = 0.0;
    for (uint d = t; d < D; d += WG) dd += dout[qoff + d] * o[qoff + d];
    float di = block_sum(dd);     // its barriers also publish a_s, b_s
    if (t == 0u) delta[gid] = di;
    float l_i = lse[gid];
  #else
    barrier();
  #endif
    uint lo = window_lo(i);
  #if PASS == 0
    float m = NEG;
    for (uint j = lo + t; j <= i; j += WG) {
        float s;
        DOT(a_s, k, (j * HK + kh) * D, s);
        s = cap(SCALE * s);
        p_s[j - lo] = s;
        m = max(m, s);
    }
    m = block_max(m);
    float l = 0.0;
    for (uint j = lo + t; j <= i; j += WG) {   // the same thread's own entries: no barrier needed
        float e = exp(p_s[j - lo] - m);
        p_s[j - lo] = e;
        l += e;
    }
    l = block_sum(l);             // its barriers publish p_s
    if (t == 0u) lse[gid] = m + log(l);
    float inv = 1.0 / l;
    for (uint d = t; d < D; d += WG) {
        float acc = 0.0;
        for (uint j = lo; j <= i; j++) acc += p_s[j - lo] * v[(j * HK + kh) * D + d];
        o[qoff + d] = acc * inv;
    }
  #else
    for (uint j = lo + t; j <= i; j += WG) {
        float s, dp;
        DOT(a_s, k, (j * HK + kh) * D, s);
        DOT(b_s, v, (j * HK + kh) * D, dp);
        float c = cap(SCALE * s);
        p_s[j - lo] = exp(c - l_i) * (dp - di) * cap_grad(c);
    }
    barrier();
    for (uint d = t; d < D; d += WG) {
        float acc = 0.0;
        for (uint j = lo; j <= i; j++) acc += p_s[j - lo] * k[(j * HK + kh) * D + d];
        dq[qoff + d] = SCALE * acc;
    }
  #endif
#else
    if (gid >= N * HK) return;
    uint j = gid / HK, kh = gid % HK;
    uint koff = gid * D;
    for (uint d = t; d < D; d += WG) {
        a_s[d] = k[koff + d];
        b_s[d] = v[koff + d];
        acck[d] = 0.0;
        accv[d] = 0.0;
    }
    uint hi = (WINDOW > 0u) ? min(N - 1u, j + WINDOW - 1u) : N - 1u;   // queries j..hi see key j
    for (uint g = 0u; g < G; g++) {
        uint h = kh * G + g;
        barrier();   // a_s/b_s/acc written, or the previous head's p_s/ds_s read, by every thread
        for (uint i = j + t; i <= hi; i += WG) {
            uint row = i * HQ + h;
            float s, dp;
            DOT(a_s, q, row * D, s);
            DOT(b_s, dout, row * D, dp);
            float c = cap(SCALE * s);
            float p = exp(c - lse[row]);
            p_s[i - j] = p;
            ds_s[i - j] = p * (dp - delta[row]) * cap_grad(c);
        }
        barrier();
        for (uint d = t; d < D; d += WG) {
            float ak = 0.0, av = 0.0;
            for (uint i = j; i <= hi; i++) {
                uint off = (i * HQ + h) * D + d;
                ak += ds_s[i - j] * q[off];
                av += p_s[i - j] * dout[off];
            }
            acck[d] += ak;
            accv[d] += av;
        }
    }
    for (uint d = t; d < D; d += WG) {   // each thread reads only the acc entries it wrote
        dk[koff + d] = SCALE * acck[d];
        dv[koff + d] = accv[d];
    }
#endif
}
