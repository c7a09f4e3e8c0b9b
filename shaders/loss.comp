#version 450
// loss: the sources' training losses and dL/dlogits, in three dispatches. The rules (RULE), their
// formulas, the soft targets of position-edit and the stats layout are written ONCE, in the
// docstring of engine/reference/loss.py (the twin, float64); this file follows that table.
//
// @variant loss_rows   PHASE=0
// @variant loss_reduce PHASE=1
// @variant loss_grad   PHASE=2
//
// loss_rows    one work-group per row t: two passes over V (max/argmax and, when HOLD > 0, the
//              strongest wrong token r; then the sums with the max subtracted, f32) → the row
//              record rw[t, RW] below, which says whether the row mismatches (before its weight).
//   Bindings: 0 rw u32[T, RW] (w), 1 z f32[T, V] (r), 2 b f32[T, V] (r, the base logits; only
//             position-edit reads it), 3 tgt u32[T] (r), 4 ed u32[T] (r, edits; position-edit only).
//   Grid: T groups (spilling into y).
// loss_reduce  one work-group over the T row records: mismatches, the first one (t*), the sums,
//              the loss → st (STAT_WORDS words, then pred[T] when PRED).
//   Bindings: 0 st u32[STAT_WORDS (+ T)] (w), 1 rw (r), 2 tgt (r), 3 wt f32[T] (r).  Grid: 1.
// loss_grad    one invocation per (t, v): dz[t, v] = c_t * g_tv from z, the row record and st.
//   Bindings: 0 dz f32[T, V] (w), 1 z (r), 2 b (r), 3 rw (r), 4 st (r), 5 tgt (r), 6 wt (r).
//   Grid: ceil(T * V / WG) groups (spilling into y).
// Constants (every phase): WG (power of two for rows/reduce), T, V, RULE (engine.reference.loss.RULES),
// MARGIN (position-edit), HOLD (logits the target must lead the strongest wrong token by; 0: only
// a != y mismatches, and r's reduction is skipped), PRED (1: st holds STAT_WORDS + T words, the
// per-row predictions).
// Twin: reference.loss.loss.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint T = 1;
layout(constant_id = 2) const uint V = 1;
layout(constant_id = 3) const uint RULE = 1;
layout(constant_id = 4) const float MARGIN = 0.1;
layout(constant_id = 5) const float HOLD = 0.0;
layout(constant_id = 6) const uint PRED = 0;
layout(local_size_x_id = 0) in;

// rules (engine.reference.loss.RULES)
#define R_CE 0u
#define R_FIRST 1u
#define R_MISMATCH 2u
#define R_SPAN 3u
#define R_EDIT 4u
#define R_TARGET 5u
#define EDIT_NONE 0xFFFFFFFFu
#define EDIT_ARGMAX 0xFFFFFFFEu
#define NONE 0xFFFFFFFFu
// row record words (floats as bits)
#define RW 12u
#define RW_PRED 0u      // u32 a_t
#define RW_M 1u         // f32 m = max z
#define RW_LOGS 2u      // f32 log S
#define RW_LOGS2 3u     // f32 log S' (first-mismatch: the sum without r)
#define RW_LOSS 4u      // f32 the row's loss term before c_t (CE, CE + log S - log S', CE(q, p), z_y^2)
#define RW_MB 5u        // f32 max b (position-edit)
#define RW_LOGSBZ 6u    // f32 log(S_b * Z): q_v = exp(b_v - m_b - this) for ordinary v
#define RW_QY 7u        // f32 q_y at an edited row
#define RW_WRONG 8u     // u32 the wrong token u at an edited row, NONE otherwise
#define RW_BAD 9u       // u32 1 when the row's logits hold NaN or +inf
#define RW_RIVAL 10u    // u32 r: argmax_{v != y} of the key (HOLD = 0: a, all a mismatching row needs)
#define RW_MIS 11u      // u32 1 when a != y or k_y - k_r < HOLD (the weight is not looked at)
// stats words (engine.reference.loss.STAT_FIELDS)
#define ST_LOSS 0u
#define ST_NMIS 1u
#define ST_FIRST 2u
#define ST_NORM 3u
#define ST_COUNTED 4u
#define ST_BAD 5u
#define STAT_WORDS 8u

#define NEG_INF uintBitsToFloat(0xFF800000u)
#define FLT_MIN 1.17549435e-38

float u2f(uint x) { return uintBitsToFloat(x); }
uint f2u(float x) { return floatBitsToUint(x); }
void sync() { memoryBarrierShared(); barrier(); }

#if PHASE == 0
layout(binding = 0) writeonly buffer Rows { uint rw[]; };
layout(binding = 1) readonly buffer Z { float z[]; };
layout(binding = 2) readonly buffer B { float b[]; };
layout(binding = 3) readonly buffer Tgt { uint tgt[]; };
layout(binding = 4) readonly buffer Ed { uint ed[]; };

shared float sf[4u * WG];
shared uint su[3u * WG];

// Arg-best over the work-group: sf[o + i] keys, su[p + i] indices; the largest key wins, then the
// lowest index. Leaves the winner at [o], [p].
void argbest(uint o, uint p, uint l) {
    for (uint s = WG >> 1u; s > 0u; s >>= 1u) {
        if (l < s) {
            float ka = sf[o + l], kb = sf[o + l + s];
            uint ia = su[p + l], ib = su[p + l + s];
            if (ia == NONE || (ib != NONE && (kb > ka || (kb == ka && ib < ia)))) { sf[o + l] = kb; su[p + l] = ib; }
        }
        sync();
    }
}

// Sums over the work-group of the slots j0 <= j < j1 (values sf[j * WG + i]); totals at [j * WG].
void sums(uint j0, uint j1, uint l) {
    for (uint s = WG >> 1u; s > 0u; s >>= 1u) {
        if (l < s) for (uint j = j0; j < j1; j++) sf[j * WG + l] += sf[j * WG + l + s];
        sync();
    }
}

void main() {
    uint t = flat_group_id(), l = gl_LocalInvocationID.x;
    if (t >= T) return;                                   // (whole group: barriers stay uniform)
    uint off = t * V, y = tgt[t];
    // pass a: the prediction (argmax z; argmin |z| for target-only), the strongest wrong token
    // (HOLD > 0), argmax b, non-finite values
    float best = NEG_INF, bbest = NEG_INF, rbest = NEG_INF;
    uint arg = NONE, barg = NONE, rarg = NONE, bad = 0u;
    for (uint v = l; v < V; v += WG) {
        float x = z[off + v];
        bad |= uint(isnan(x) || (isinf(x) && x > 0.0));
        float key = RULE == R_TARGET ? -abs(x) : x;
        if (arg == NONE || key > best) { best = key; arg = v; }
        if (HOLD > 0.0 && v != y && (rarg == NONE || key > rbest)) { rbest = key; rarg = v; }
        if (RULE == R_EDIT) {
            float xb = b[off + v];
            if (barg == NONE || xb > bbest) { bbest = xb; barg = v; }
        }
    }
    sf[l] = best; su[l] = arg; sf[WG + l] = bbest; su[WG + l] = barg; sf[2u * WG + l] = float(bad);
    sf[3u * WG + l] = rbest; su[2u * WG + l] = rarg;
    sync();
    argbest(0u, 0u, l);
    if (RULE == R_EDIT) argbest(WG, WG, l);
    if (HOLD > 0.0) argbest(3u * WG, 2u * WG, l);
    sums(2u, 3u, l);                                      // any bad value
    float m = sf[0]; uint a = su[0];
    float mb = sf[WG]; uint ab = su[WG];
    uint row_bad = sf[2u * WG] > 0.0 ? 1u : 0u;
    uint r = a, mis = uint(a != y);
    if (HOLD > 0.0) {
        r = su[2u * WG];
        float zy = z[off + y];
        precise float gap = (RULE == R_TARGET ? -abs(zy) : zy) - sf[3u * WG];   // f32, as the twin
        if (r != NONE && gap < HOLD) mis = 1u;
    }
    sync();
    uint base = t * RW;
    if (RULE == R_TARGET) {
        if (l == 0u) {
            float zy = z[off + y];
            rw[base + RW_PRED] = a; rw[base + RW_LOSS] = f2u(zy * zy); rw[base + RW_BAD] = row_bad;
            rw[base + RW_RIVAL] = r; rw[base + RW_MIS] = mis;
            for (uint i = 1u; i < RW_BAD; i++) if (i != RW_LOSS) rw[base + i] = 0u;
        }
        return;
    }
    uint u = EDIT_NONE;
    if (RULE == R_EDIT) { u = ed[t]; if (u == EDIT_ARGMAX) u = ab; }
    // pass b: sums with the max subtracted
    float s = 0.0, s2 = 0.0, sb = 0.0, sbd = 0.0, mo = NEG_INF;
    for (uint v = l; v < V; v += WG) {
        float e = exp(z[off + v] - m);
        s += e;
        if (RULE == R_FIRST && v != r) s2 += e;
        if (RULE == R_EDIT) {
            float xb = b[off + v], eb = exp(xb - mb);
            sb += eb; sbd += eb * (z[off + v] - m);
            if (v != y && v != u) mo = max(mo, xb);
        }
    }
    sf[l] = s; sf[WG + l] = s2; sf[2u * WG + l] = sb; sf[3u * WG + l] = sbd;
    su[l] = 0u;
    sync();
    sums(0u, RULE == R_EDIT ? 4u : 2u, l);
    s = sf[0]; s2 = sf[WG]; sb = sf[2u * WG]; sbd = sf[3u * WG];
    sync();
    if (RULE == R_EDIT) {                                 // max of b over v not in {y, u}
        sf[l] = mo; su[l] = 0u;
        sync();
        for (uint st = WG >> 1u; st > 0u; st >>= 1u) {
            if (l < st) sf[l] = max(sf[l], sf[l + st]);
            sync();
        }
        mo = sf[0];
    }
    if (l != 0u) return;
    float logs = log(s), dy = z[off + y] - m;
    float ce = logs - dy;
    float logs2 = 0.0, loss = ce, logsbz = 0.0, qy = 0.0;
    if (RULE == R_FIRST) {
        logs2 = log(max(s2, FLT_MIN));
        loss = ce + logs - logs2;
    } else if (RULE == R_EDIT) {
        float logsb = log(sb);
        float sqd = sbd / sb;                             // sum_v pi_v (z_v - m)
        logsbz = logsb;
        if (u < V) {                                      // an edited row (the construction in the twin's doc)
            float py = exp(b[off + y] - mb) / sb;
            float pu = u != y ? exp(b[off + u] - mb) / sb : 0.0;
            float M = mo > NEG_INF ? exp(mo - mb) / sb : 0.0;
            float Y = max(py + pu, M + MARGIN);
            float Zn = 1.0 - py - pu + Y;
            float du = u != y ? z[off + u] - m : 0.0;
            qy = Y / Zn;
            sqd = (sqd - pu * du - py * dy) / Zn + qy * dy;
            logsbz = logsb + log(Zn);
        } else {
            u = NONE;
        }
        loss = logs - sqd;
    }
    rw[base + RW_PRED] = a; rw[base + RW_M] = f2u(m); rw[base + RW_LOGS] = f2u(logs);
    rw[base + RW_LOGS2] = f2u(logs2); rw[base + RW_LOSS] = f2u(loss); rw[base + RW_MB] = f2u(mb);
    rw[base + RW_LOGSBZ] = f2u(logsbz); rw[base + RW_QY] = f2u(qy); rw[base + RW_WRONG] = u;
    rw[base + RW_BAD] = row_bad; rw[base + RW_RIVAL] = r; rw[base + RW_MIS] = mis;
}
#endif

#if PHASE == 1
layout(binding = 0) writeonly buffer Stats { uint st[]; };
layout(binding = 1) readonly buffer Rows { uint rw[]; };
layout(binding = 2) readonly buffer Tgt { uint tgt[]; };
layout(binding = 3) readonly buffer Wt { float wt[]; };

shared uint su[5u * WG];
shared float sf[2u * WG];

void main() {
    uint l = gl_LocalInvocationID.x;
    uint nmis = 0u, first = T, counted = 0u, bad = 0u;
    float wsum = 0.0, lsum = 0.0;
    for (uint t = l; t < T; t += WG) {
        float w = wt[t];
        uint pred = rw[t * RW + RW_PRED];
        bool c = w > 0.0, mis = c && rw[t * RW + RW_MIS] != 0u;
        nmis += uint(mis); counted += uint(c); bad += rw[t * RW + RW_BAD];
        if (mis) first = min(first, t);
        wsum += w;
        if (c && (RULE != R_MISMATCH || mis)) lsum += w * u2f(rw[t * RW + RW_LOSS]);
        if (PRED != 0u) st[STAT_WORDS + t] = pred;
    }
    su[l] = nmis; su[WG + l] = first; su[2u * WG + l] = counted; su[3u * WG + l] = bad;
    sf[l] = wsum; sf[WG + l] = lsum;
    sync();
    for (uint s = WG >> 1u; s > 0u; s >>= 1u) {
        if (l < s) {
            su[l] += su[l + s]; su[WG + l] = min(su[WG + l], su[WG + l + s]);
            su[2u * WG + l] += su[2u * WG + l + s]; su[3u * WG + l] += su[3u * WG + l + s];
            sf[l] += sf[l + s]; sf[WG + l] += sf[WG + l + s];
        }
        sync();
    }
    if (l != 0u) return;
    first = su[WG]; counted = su[2u * WG];
    float norm = RULE == R_FIRST ? 1.0 : (RULE == R_SPAN || RULE == R_TARGET) ? float(counted) : sf[0];
    float loss;
    if (RULE == R_FIRST) loss = first < T ? wt[first] * u2f(rw[first * RW + RW_LOSS]) : 0.0;
    else loss = norm > 0.0 ? sf[WG] / norm : 0.0;
    st[ST_LOSS] = f2u(loss); st[ST_NMIS] = su[0]; st[ST_FIRST] = first; st[ST_NORM] = f2u(norm);
    st[ST_COUNTED] = counted; st[ST_BAD] = su[3u * WG]; st[6] = 0u; st[7] = 0u;
}
#endif

#if PHASE == 2
layout(binding = 0) writeonly buffer DZ { float dz[]; };
layout(binding = 1) readonly buffer Z { float z[]; };
layout(binding = 2) readonly buffer B { float b[]; };
layout(binding = 3) readonly buffer Rows { uint rw[]; };
layout(binding = 4) readonly buffer Stats { uint st[]; };
layout(binding = 5) readonly buffer Tgt { uint tgt[]; };
layout(binding = 6) readonly buffer Wt { float wt[]; };

void main() {
    uint e = flat_group_id() * WG + gl_LocalInvocationID.x;
    if (e >= T * V) return;
    uint t = e / V, v = e - t * V, base = t * RW;
    float w = wt[t], norm = u2f(st[ST_NORM]);
    uint y = tgt[t];
    float c;
    if (RULE == R_FIRST) c = t == st[ST_FIRST] ? w : 0.0;
    else if (RULE == R_MISMATCH) c = (w > 0.0 && norm > 0.0 && rw[base + RW_MIS] != 0u) ? w / norm : 0.0;
    else c = (w > 0.0 && norm > 0.0) ? w / norm : 0.0;
    if (c == 0.0) { dz[e] = 0.0; return; }
    float x = z[e];
    float oh = v == y ? 1.0 : 0.0;
    if (RULE == R_TARGET) { dz[e] = c * 2.0 * x * oh; return; }
    float m = u2f(rw[base + RW_M]);
    float p = exp(x - m - u2f(rw[base + RW_LOGS]));
    float g;
    if (RULE == R_FIRST) {
        float s = v == rw[base + RW_RIVAL] ? 0.0 : exp(x - m - u2f(rw[base + RW_LOGS2]));
        g = 2.0 * p - oh - s;
    } else if (RULE == R_EDIT) {
        uint u = rw[base + RW_WRONG];
        float q = u != NONE && v == y ? u2f(rw[base + RW_QY]) : u != NONE && v == u ? 0.0
                : exp(b[e] - u2f(rw[base + RW_MB]) - u2f(rw[base + RW_LOGSBZ]));
        g = p - q;
    } else {
        g = p - oh;
    }
    dz[e] = c * g;
}
#endif
