#version 450
// sample: logits f32[V] → one sampled token and its statistics, in ONE work-group, in the stage
// order written in engine/sampling.py (bans, repetition penalty, model entropy/p_max, temperature
// (fixed | dynatemp | EDT | greedy), softmax, top-k → top-p → min-p (ties kept), draw with u).
//
// Bindings: 0 out    u32[OUT_WORDS]       (w)  results, layout O_* below
//           1 lg4    vec4[floor(V/4)]     (rw) the logits, read 4 at a time ...
//           2 lg1    f32[V]               (rw) ... and the same buffer again for the last V % 4;
//                                              overridden logits are replaced during the dispatch
//                                              and restored before it ends (coherent)
//           3 prm    u32[SP_WORDS]        (r)  per-step params, layout SP_* below
//           4 ring   u32[RW]              (r)  ring of recent tokens (count and head in prm)
//           5 wk     vec4[ceil(V/4)]      (rw) scratch: w = exp((z - max) / T), coherent
// Constants: WG (power of two), V, RW (ring capacity), CAP (candidate list, power of two,
//            CAP >= 2 * WG and CAP >= 2 * (RW + 8)). Shared memory: 12 * CAP bytes + a few words.
// Grid: (1, 1, 1).  Twin: reference.sample.
//
// How, without sorting V values (passes over V are the cost; everything else is in shared memory):
//  0   banned and penalised tokens (at most 8 + RW): their logits are saved in shared memory and
//      replaced in the buffer, then restored after P2, so the passes read plain memory.
//  P1  logits → online max / sum / entropy sum, argmax, count of non-banned tokens.
//  P2  w = exp((z - max) / T) → wk; a "ladder": count and mass of w ≥ 2^-e for 17 values of e, w > 0.
//  Thresholds: top-k (by count) and top-p (by mass) each start from the ladder bracket that holds
//  their answer. When the bracket (or everything above its low end) holds ≤ CAP tokens, one pass
//  compacts them into shared memory, where a bitonic sort and a scan give the exact threshold
//  (the fast path). Otherwise a pass splits the bracket 16 ways by key and repeats.
//  Keys are the f32 bits of w ≥ 0: their integer order is the order of w.
//  Draw: from the shared list when it holds every kept token (sorted back to index order, scanned);
//  else one pass over wk in contiguous chunks: chunk masses, a scan, and one invocation walks the
//  chunk where the cumulative mass reaches u · total.
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"

// ---- per-step params (engine/sampling.py SAMPLE_PARAMS) ----
#define SP_TEMP        0u   // f32 temperature (T0 for EDT)
#define SP_RULE        1u   // u32 0 fixed, 1 dynatemp, 2 edt
#define SP_DYN_RANGE   2u   // f32
#define SP_DYN_EXP     3u   // f32
#define SP_EDT_THETA   4u   // f32
#define SP_EDT_N       5u   // f32
#define SP_TOP_K       6u   // u32, 0 = off
#define SP_TOP_P       7u   // f32, 1 = off
#define SP_MIN_P       8u   // f32, 0 = off
#define SP_PENALTY     9u   // f32, 1 = off
#define SP_WINDOW     10u   // u32
#define SP_U          11u   // f32 in [0, 1)
#define SP_RING_COUNT 12u   // u32
#define SP_RING_HEAD  13u   // u32
#define SP_N_BANNED   14u   // u32 <= 8
#define SP_BANNED     16u   // u32[8]
#define SP_WORDS      24u
// ---- outputs (engine/sampling.py OUT_FIELDS) ----
#define O_TOKEN    0u
#define O_P_FINAL  1u
#define O_P_MODEL  2u
#define O_H_MODEL  3u
#define O_H_FINAL  4u
#define O_P_MAX    5u
#define O_TEMP     6u
#define O_N_KEPT   7u
#define O_PATH     8u
#define O_PASSES   9u   // passes over the vocabulary (diagnostics: 1 greedy, 3 typical, more when refining)
#define O_LISTED  10u   // tokens gathered into shared memory, all lists together (diagnostics)
#define O_NONFINITE 11u // logits that are NaN or +inf after the bans: the model is broken, not the draw
#define O_ARGMAX  12u   // the most likely token (its model probability is p_max): logprobs' top entry
#define OUT_WORDS 16u
#define PATH_GREEDY 0u
#define PATH_LIST   1u
#define PATH_FULL   2u
#define PATH_NONE   3u

#define GREEDY_T 1e-6
#define LN2 0.69314718055994531
#define NEG_INF uintBitsToFloat(0xFF800000u)
#define NONE 0xFFFFFFFFu
#define KEY_HI 0x3F800001u   // one above the key of w = 1.0, the largest weight
#define KEY_MIN 0x00800000u  // the key of FLT_MIN, the smallest weight kept (denormal weights are 0)
#define FLT_MIN 1.17549435e-38
#define NL 18u               // ladder levels: w >= 2^-e, then w > 0
#define NT 15u               // thresholds per refining pass (splits a bracket 16 ways)
#define MAXV 40u

layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint V = 1;
layout(constant_id = 2) const uint RW = 1;
layout(constant_id = 3) const uint CAP = 1024;
layout(local_size_x_id = 0) in;

layout(binding = 0) writeonly buffer Out { uint o[]; };
layout(binding = 1) coherent buffer Logits4 { vec4 lg4[]; };
layout(binding = 2) coherent buffer Logits1 { float lg1[]; };
layout(binding = 3) readonly buffer Params { uint prm[]; };
layout(binding = 4) readonly buffer Recent { uint ring[]; };
layout(binding = 5) coherent buffer Work { vec4 wk[]; };

const uint V4 = (V + 3u) / 4u;          // vec4 groups
const uint VF = V / 4u;                 // full vec4 groups
const uint RA = 0u;                     // shared regions of CAP words: A, B, C
const uint RB = CAP;
const uint RC = 2u * CAP;

shared uint sm[3u * CAP];               // A/B: candidate keys/indices, C: scan or override list;
                                        // all three double as reduction scratch
shared uint s_u[8];                     // broadcast words
#define S_FIND  0u
#define S_COUNT 1u
#define S_TOKEN 2u
#define S_LAST  3u
#define S_W     4u

// w >= 2^-e for e = 1..8, 10, 12, 15, 20 (dense where top-p cuts), 27, 36, 50, 70, 100 (top-k at a
// low temperature), then w > 0. Keys: (127 - e) << 23.
const uint LADDER[NL] = uint[](0x3F000000u, 0x3E800000u, 0x3E000000u, 0x3D800000u, 0x3D000000u, 0x3C800000u,
                               0x3C000000u, 0x3B800000u, 0x3A800000u, 0x39800000u, 0x38000000u, 0x35800000u,
                               0x32000000u, 0x2D800000u, 0x26800000u, 0x1C800000u, 0x0D800000u, 0x00800000u);

uint t;                                 // gl_LocalInvocationID.x
uint passes;                            // passes over the vocabulary so far (uniform)
uint nonfinite;                         // NaN / +inf logits seen by P1 (uniform once reduced)
uint listed;                            // tokens gathered into shared lists so far (uniform)
uint acc[MAXV];                         // per-invocation values being summed over the work-group

void sync() { memoryBarrierShared(); barrier(); }
void sync_all() { memoryBarrierBuffer(); memoryBarrierShared(); barrier(); }
float u2f(uint x) { return uintBitsToFloat(x); }
uint f2u(float x) { return floatBitsToUint(x); }
uint next_pow2(uint n) { uint p = 1u; while (p < n) p <<= 1u; return p; }

// ---- work-group sums -----------------------------------------------------------------------------
// Sum acc[0..nv) over the work-group (uints below first_float, floats from it), using shared words
// [off, off + words) as scratch; every invocation gets the totals back in acc.
void reduce_acc(uint nv, uint first_float, uint off, uint words) {
    uint per = words / WG;
    for (uint base = 0u; base < nv; base += per) {
        uint n = min(per, nv - base);
        for (uint v = 0u; v < n; v++) sm[off + v * WG + t] = acc[base + v];
        sync();
        for (uint s = WG >> 1u; s > 0u; s >>= 1u) {
            if (t < s) {
                for (uint v = 0u; v < n; v++) {
                    uint a = sm[off + v * WG + t], b = sm[off + v * WG + t + s];
                    sm[off + v * WG + t] = base + v >= first_float ? f2u(u2f(a) + u2f(b)) : a + b;
                }
            }
            sync();
        }
        for (uint v = 0u; v < n; v++) acc[base + v] = sm[off + v * WG];
        sync();
    }
}

// Exclusive prefix sum (Blelloch) of the floats in region C [0, P), P a power of two; returns the total.
float scan_c(uint P) {
    for (uint d = 1u; d < P; d <<= 1u) {
        for (uint i = t; i < P / (2u * d); i += WG) {
            uint a = RC + (2u * i + 1u) * d - 1u;
            sm[a + d] = f2u(u2f(sm[a + d]) + u2f(sm[a]));
        }
        sync();
    }
    float total = u2f(sm[RC + P - 1u]);
    sync();
    if (t == 0u) sm[RC + P - 1u] = 0u;
    sync();
    for (uint d = P >> 1u; d > 0u; d >>= 1u) {
        for (uint i = t; i < P / (2u * d); i += WG) {
            uint a = RC + (2u * i + 1u) * d - 1u;
            uint x = sm[a];
            sm[a] = sm[a + d];
            sm[a + d] = f2u(u2f(sm[a + d]) + u2f(x));
        }
        sync();
    }
    return total;
}

// Bitonic sort of sm[ka + i], i < P (a power of two), ascending, moving sm[kb + i] along (kb = NONE: no payload).
void bitonic(uint P, uint ka, uint kb) {
    for (uint k = 2u; k <= P; k <<= 1u) {
        for (uint j = k >> 1u; j > 0u; j >>= 1u) {
            for (uint i = t; i < P; i += WG) {
                uint l = i ^ j;
                if (l > i) {
                    uint a = sm[ka + i], b = sm[ka + l];
                    if ((a > b) == ((i & k) == 0u)) {
                        sm[ka + i] = b; sm[ka + l] = a;
                        if (kb != NONE) { uint x = sm[kb + i]; sm[kb + i] = sm[kb + l]; sm[kb + l] = x; }
                    }
                }
            }
            sync();
        }
    }
}

// ---- overrides (bans, penalised tokens) ----------------------------------------------------------
// Applied IN PLACE: before P1 each distinct overridden token's logit is saved in shared memory and
// replaced in the logits buffer; after P2 (the last pass over the logits) it is restored. The two
// streaming passes then read plain memory with no per-element test.
// Region C holds the entries sorted, (token << 1) | banned, and from C + CAP/2 the saved logits.
uint n_ov;                              // entries (uniform)
float penalty;

uint ov_entry(uint tok, uint banned) { return tok < V ? (tok << 1u) | banned : NONE; }

void ov_build() {
    uint nb = min(prm[SP_N_BANNED], 8u);
    uint nw = (penalty != 1.0) ? min(min(prm[SP_WINDOW], prm[SP_RING_COUNT]), RW) : 0u;
    uint head = prm[SP_RING_HEAD] % RW;
    n_ov = nb + nw;
    uint P = next_pow2(n_ov);
    for (uint e = t; e < P; e += WG) {
        uint v = NONE;
        if (e < nb) v = ov_entry(prm[SP_BANNED + e], 1u);
        else if (e < n_ov) v = ov_entry(ring[(head + RW - 1u - (e - nb)) % RW], 0u);
        sm[RC + e] = v;
    }
    sync();
    bitonic(P, RC, NONE);
}

// Entry e starts the run of its token (entries of one token are adjacent, bans after penalties).
bool ov_first(uint e) {
    uint x = sm[RC + e];
    return x != NONE && (e == 0u || (sm[RC + e - 1u] >> 1u) != (x >> 1u));
}

void ov_apply() {
    for (uint e = t; e < n_ov; e += WG) {
        if (!ov_first(e)) continue;
        uint tok = sm[RC + e] >> 1u;
        bool ban = false;
        for (uint f = e; f < n_ov && (sm[RC + f] >> 1u) == tok; f++) ban = ban || (sm[RC + f] & 1u) != 0u;
        float z = lg1[tok];
        sm[RC + CAP / 2u + e] = f2u(z);
        lg1[tok] = ban ? NEG_INF : (z > 0.0 ? z / penalty : z * penalty);
    }
    sync_all();
}

void ov_restore() {                     // after a barrier that ends the last read of the logits
    for (uint e = t; e < n_ov; e += WG)
        if (ov_first(e)) lg1[sm[RC + e] >> 1u] = u2f(sm[RC + CAP / 2u + e]);
}

// The last, partial vec4 group (V % 4 != 0): -inf beyond V.
vec4 load_tail() {
    vec4 z = vec4(NEG_INF);
    for (uint c = 0u; c < V % 4u; c++) z[c] = lg1[4u * VF + c];
    return z;
}

// Stream this invocation's groups j = t + WG * q (the tail group last) through BODY(j, z).
#define FOR_EACH_LOGITS_GROUP(BODY) {                                                   \
    for (uint j = t; j < VF; j += WG) { vec4 z = lg4[j]; BODY(j, z) }                   \
    if (VF < V4 && t == VF % WG) { vec4 z = load_tail(); BODY(VF, z) }                  \
}

// The penalised logit of one token, from the raw params (for p_model at the end).
float logit_of(uint tok) {
    float z = lg1[tok];
    uint nb = min(prm[SP_N_BANNED], 8u);
    for (uint b = 0u; b < nb; b++) if (prm[SP_BANNED + b] == tok) return NEG_INF;
    uint nw = (penalty != 1.0) ? min(min(prm[SP_WINDOW], prm[SP_RING_COUNT]), RW) : 0u;
    uint head = prm[SP_RING_HEAD] % RW;
    for (uint e = 0u; e < nw; e++)
        if (ring[(head + RW - 1u - e) % RW] == tok) return z > 0.0 ? z / penalty : z * penalty;
    return z;
}

// ---- refining passes over wk ---------------------------------------------------------------------
uint th[NT];                            // thresholds of the last refining pass (uniform)
uint list_n;                            // entries in the shared list (uniform)
uint list_lo;                           // its keys cover [list_lo, list_hi)
uint list_hi;

// Count and mass of keys in [th[s], hi) for each s, over keys in [lo, hi); totals in acc[s], acc[NT + s].
void refine_pass(uint lo, uint hi) {
    uint step = max(1u, (hi - lo) / (NT + 1u));
    for (uint s = 0u; s < NT; s++) th[s] = min(lo + step * (s + 1u), hi);
    float c[NT], m[NT];                                  // counts exact in f32 per invocation
    for (uint s = 0u; s < NT; s++) { c[s] = 0.0; m[s] = 0.0; }
    passes++;
    for (uint j = t; j < V4; j += WG) {
        vec4 w = wk[j];
        uvec4 key = floatBitsToUint(w);
        vec4 inside = vec4(greaterThanEqual(key, uvec4(lo))) * vec4(lessThan(key, uvec4(hi)));
        if (any(notEqual(inside, vec4(0.0))))
            for (uint s = 0u; s < NT; s++) {
                vec4 g = inside * vec4(greaterThanEqual(key, uvec4(th[s])));
                c[s] += dot(g, vec4(1.0)); m[s] += dot(g, w);
            }
    }
    for (uint s = 0u; s < NT; s++) { acc[s] = uint(c[s]); acc[NT + s] = f2u(m[s]); }
    list_n = 0u;                                         // the reduction overwrote any list
    reduce_acc(2u * NT, NT, 0u, 3u * CAP);
}

// Gather the tokens with keys in [lo, hi) into A (key) / B (index); returns their number (<= CAP by
// the caller's count). Hits are rare: the streaming loop only sets one bit per group with a hit (no
// branch, which lavapipe runs slowly), then the flagged groups are read again and appended.
uint compact(uint lo, uint hi) {
    if (t == 0u) s_u[S_COUNT] = 0u;
    sync();
    passes++;
    uint own = V4 > t ? (V4 - t + WG - 1u) / WG : 0u;   // this invocation's groups j = t + WG * q
    for (uint base = 0u; base < own; base += 32u * 32u) {
        uint masks[32];
        for (uint b = 0u; b < 32u; b++) masks[b] = 0u;
        uint end = min(base + 32u * 32u, own), cur = 0u, q = base;
        for (; q < end; q++) {
            uvec4 key = floatBitsToUint(wk[t + WG * q]);
            bvec4 inside = bvec4(uvec4(greaterThanEqual(key, uvec4(lo))) & uvec4(lessThan(key, uvec4(hi))));
            cur |= any(inside) ? 1u << (q & 31u) : 0u;
            if ((q & 31u) == 31u) { masks[(q - base) >> 5u] = cur; cur = 0u; }
        }
        if ((q & 31u) != 0u) masks[(q - base) >> 5u] = cur;
        for (uint b = 0u; b < 32u; b++) {
            for (uint mk = masks[b]; mk != 0u; mk &= mk - 1u) {
                uint j = t + WG * (base + 32u * b + uint(findLSB(mk)));
                uvec4 key = floatBitsToUint(wk[j]);
                for (uint l = 0u; l < 4u; l++) {
                    if (key[l] >= lo && key[l] < hi) {
                        uint slot = atomicAdd(s_u[S_COUNT], 1u);
                        if (slot < CAP) { sm[RA + slot] = key[l]; sm[RB + slot] = 4u * j + l; }
                    }
                }
            }
        }
    }
    sync();
    uint n = min(s_u[S_COUNT], CAP);
    sync();
    return n;
}

// The list: n entries sorted by key descending (A holds ~key), C holds the exclusive scan of w.

void list_build(uint lo, uint hi) {
    list_n = compact(lo, hi);
    listed += list_n;
    list_lo = lo; list_hi = hi;
    uint P = next_pow2(list_n);
    for (uint i = t; i < P; i += WG) {
        sm[RA + i] = i < list_n ? ~sm[RA + i] : NONE;      // ascending ~key = descending key
        if (i >= list_n) sm[RB + i] = NONE;
    }
    sync();
    bitonic(P, RA, RB);
    for (uint i = t; i < P; i += WG) sm[RC + i] = i < list_n ? ~sm[RA + i] : 0u;   // w bits (key)
    sync();
    scan_c(P);
}
uint list_key(uint i) { return ~sm[RA + i]; }
float list_incl(uint i) { return u2f(sm[RC + i]) + u2f(list_key(i)); }   // mass of entries 0..i

// Smallest i < n with base + incl(i) >= target (NONE if none).
uint list_first_mass(float base, float target) {
    if (t == 0u) s_u[S_FIND] = NONE;
    sync();
    for (uint i = t; i < list_n; i += WG) if (base + list_incl(i) >= target) atomicMin(s_u[S_FIND], i);
    sync();
    uint r = s_u[S_FIND];
    sync();
    return r;
}

// Number of entries with key >= tau (they are a prefix).
uint list_count_ge(uint tau) {
    if (t == 0u) s_u[S_FIND] = 0u;
    sync();
    for (uint i = t; i < list_n; i += WG)
        if (list_key(i) >= tau && (i + 1u == list_n || list_key(i + 1u) < tau)) s_u[S_FIND] = i + 1u;
    sync();
    uint r = s_u[S_FIND];
    sync();
    return r;
}

// ---- threshold search ----------------------------------------------------------------------------
// Find tau in [lo, hi): for counts, the largest key with count(key >= tau) >= k; for masses, the
// largest key with mass(key >= tau) >= X. Invariant: lo satisfies the condition, hi does not; cnt_*
// and mass_* are the count and mass of keys >= lo / >= hi. Sets res_cnt / res_mass of keys >= tau.
uint res_cnt; float res_mass;

uint search(uint lo, uint hi, uint cnt_lo, float mass_lo, uint cnt_hi, float mass_hi, bool by_mass, uint k, float X) {
    for (;;) {
        bool full = cnt_lo <= CAP;
        if (full || cnt_lo - cnt_hi <= CAP) {
            list_build(lo, full ? KEY_HI : hi);
            uint bc = full ? 0u : cnt_hi;
            float bm = full ? 0.0 : mass_hi;
            uint i;
            if (by_mass) {
                i = list_first_mass(bm, X);
                if (i == NONE) i = list_n - 1u;               // float rounding at the very end
            } else {
                i = min(k - bc, list_n) - 1u;
            }
            uint tau = list_key(i);
            uint n = list_count_ge(tau);
            res_cnt = bc + n;
            res_mass = bm + list_incl(n - 1u);
            return tau;
        }
        if (hi - lo <= 1u) { res_cnt = cnt_lo; res_mass = mass_lo; return lo; }   // all tied at lo
        refine_pass(lo, hi);
        uint sel = NONE;
        for (uint s = 0u; s < NT; s++) {
            bool ok = by_mass ? mass_hi + u2f(acc[NT + s]) >= X : cnt_hi + acc[s] >= k;
            if (ok && th[s] < hi) sel = s;
        }
        uint c[NT]; float m[NT];
        for (uint s = 0u; s < NT; s++) { c[s] = cnt_hi + acc[s]; m[s] = mass_hi + u2f(acc[NT + s]); }
        if (sel == NONE) {
            hi = th[0]; cnt_hi = c[0]; mass_hi = m[0];
        } else {
            lo = th[sel]; cnt_lo = c[sel]; mass_lo = m[sel];
            if (sel + 1u < NT && th[sel + 1u] < hi) { hi = th[sel + 1u]; cnt_hi = c[sel + 1u]; mass_hi = m[sel + 1u]; }
        }
    }
    return lo;
}

// ---- the draw ------------------------------------------------------------------------------------
uint drawn; float drawn_w, kept_mass, kept_wlogw; uint kept_n;

// From the list (it holds every key >= tau): sort the kept entries back to index order and scan.
void draw_from_list(uint tau, float u) {
    kept_n = list_count_ge(tau);
    float h = 0.0;
    for (uint i = t; i < kept_n; i += WG) { float w = u2f(list_key(i)); h += w * log(w); }
    acc[0] = f2u(h);
    reduce_acc(1u, 0u, RC, CAP);                         // A/B hold the list; C is free now
    kept_wlogw = u2f(acc[0]);
    uint P = next_pow2(kept_n);
    for (uint i = t; i < P; i += WG) {                   // A: index, B: key
        uint key = list_key(i), idx = sm[RB + i];
        sm[RA + i] = i < kept_n ? idx : NONE;
        sm[RB + i] = i < kept_n ? key : 0u;
    }
    sync();
    bitonic(P, RA, RB);
    for (uint i = t; i < P; i += WG) sm[RC + i] = sm[RB + i];
    sync();
    kept_mass = scan_c(P);
    float target = u * kept_mass;
    if (t == 0u) s_u[S_FIND] = NONE;
    sync();
    for (uint i = t; i < kept_n; i += WG)
        if (u2f(sm[RC + i]) + u2f(sm[RB + i]) >= target) atomicMin(s_u[S_FIND], i);
    sync();
    uint i = s_u[S_FIND];
    if (i == NONE) i = kept_n - 1u;                      // rounding at the very end
    drawn = sm[RA + i];
    drawn_w = u2f(sm[RB + i]);
    sync();
}

// One pass over wk in contiguous chunks (index order), then one invocation walks its chunk.
void draw_full(uint tau, float u) {
    uint per = (V4 + WG - 1u) / WG, j0 = min(t * per, V4), j1 = min(j0 + per, V4);
    float m = 0.0, h = 0.0, n = 0.0;                     // n exact in f32 per invocation
    passes++;
    for (uint j = j0; j < j1; j++) {
        vec4 w = wk[j];
        vec4 g = vec4(greaterThanEqual(floatBitsToUint(w), uvec4(tau)));
        vec4 wg = w * g;
        m += dot(wg, vec4(1.0)); h += dot(wg, log(max(w, vec4(FLT_MIN)))); n += dot(g, vec4(1.0));
    }
    acc[0] = uint(n); acc[1] = f2u(h);
    reduce_acc(2u, 1u, 0u, 2u * CAP);
    kept_n = acc[0]; kept_wlogw = u2f(acc[1]);
    sm[RC + t] = f2u(m);
    sync();
    kept_mass = scan_c(WG);
    float target = u * kept_mass, base = u2f(sm[RC + t]);
    if (t == 0u) { s_u[S_FIND] = NONE; s_u[S_LAST] = 0u; s_u[S_TOKEN] = NONE; }
    sync();
    if (m > 0.0) {
        if (base + m >= target) atomicMin(s_u[S_FIND], t);
        atomicMax(s_u[S_LAST], t);                       // rounding at the very end: the last chunk with mass
    }
    sync();
    uint owner = s_u[S_FIND] != NONE ? s_u[S_FIND] : s_u[S_LAST];
    if (t == owner) {
        float run = 0.0; uint last = NONE; float last_w = 0.0;
        for (uint j = j0; j < j1 && s_u[S_TOKEN] == NONE; j++) {
            vec4 w = wk[j];
            for (uint l = 0u; l < 4u; l++) {
                if (f2u(w[l]) >= tau) {
                    run += w[l];
                    last = 4u * j + l; last_w = w[l];
                    if (base + run >= target) { s_u[S_TOKEN] = last; break; }
                }
            }
        }
        if (s_u[S_TOKEN] == NONE) s_u[S_TOKEN] = last;
        s_u[S_W] = f2u(last_w);
    }
    sync();
    drawn = s_u[S_TOKEN];
    drawn_w = u2f(s_u[S_W]);
    sync();
}

// ---- main ----------------------------------------------------------------------------------------
uint argmax;                                             // of the model distribution (stage 3)
void write_out(uint tok, float p_final, float p_model, float h_model, float h_final, float p_max, float T,
               uint kept, uint path) {
    if (t != 0u) return;
    o[O_TOKEN] = tok; o[O_P_FINAL] = f2u(p_final); o[O_P_MODEL] = f2u(p_model);
    o[O_H_MODEL] = f2u(h_model); o[O_H_FINAL] = f2u(h_final); o[O_P_MAX] = f2u(p_max);
    o[O_TEMP] = f2u(T); o[O_N_KEPT] = kept; o[O_PATH] = path; o[O_PASSES] = passes; o[O_LISTED] = listed;
    o[O_NONFINITE] = nonfinite; o[O_ARGMAX] = argmax;
    for (uint i = O_ARGMAX + 1u; i < OUT_WORDS; i++) o[i] = 0u;
}

// P1, per invocation: running max, s = sum exp(z - max), ws = sum exp(z - max) (z - max), argmax, count.
float p1_m, p1_s, p1_ws; uint p1_arg, p1_n, p1_bad;
void p1_group(uint j, vec4 z) {
    uvec4 bad = uvec4(isnan(z)) + uvec4(isinf(z)) * uvec4(greaterThan(z, vec4(0.0)));
    p1_bad += bad.x + bad.y + bad.z + bad.w;
    float mx = max(max(z.x, z.y), max(z.z, z.w));
    if (mx > p1_m) {                                     // a new running max: rescale the sums
        if (p1_s > 0.0) { float d = p1_m - mx, e = exp(d); p1_ws = e * (p1_ws + d * p1_s); p1_s *= e; }
        p1_m = mx;
        p1_arg = 4u * j + (z.x == mx ? 0u : z.y == mx ? 1u : z.z == mx ? 2u : 3u);
    }
    if (mx > NEG_INF) {
        vec4 d = max(z - p1_m, vec4(-3.0e38));           // banned lanes: e = 0 and e * d = 0
        vec4 e = exp(d);
        p1_s += dot(e, vec4(1.0)); p1_ws += dot(e, d);
        p1_n += uint(z.x > NEG_INF) + uint(z.y > NEG_INF) + uint(z.z > NEG_INF) + uint(z.w > NEG_INF);
    }
}
#define P1_BODY(j, z) p1_group(j, z);

// P2, per invocation: the weights go to wk; ladder counts (exact in f32) and masses.
float p2_M, p2_invT;
float lc[NL], lm[NL];
#define LADDER_ADD(v) { vec4 g = step(vec4(uintBitsToFloat(LADDER[v])), w); lc[v] += dot(g, vec4(1.0)); lm[v] += dot(g, w); }
void p2_group(uint j, vec4 z) {
    vec4 w = exp((z - p2_M) * p2_invT);                  // banned (-inf) lanes give 0
    w = mix(w, vec4(1.0), equal(z, vec4(p2_M)));         // the max token: exactly 1
    w = mix(w, vec4(0.0), lessThan(w, vec4(FLT_MIN)));   // no denormals: key order = float order
    wk[j] = w;
    LADDER_ADD(0) LADDER_ADD(1) LADDER_ADD(2) LADDER_ADD(3) LADDER_ADD(4) LADDER_ADD(5) LADDER_ADD(6)
    LADDER_ADD(7) LADDER_ADD(8) LADDER_ADD(9) LADDER_ADD(10) LADDER_ADD(11) LADDER_ADD(12) LADDER_ADD(13)
    LADDER_ADD(14) LADDER_ADD(15) LADDER_ADD(16) LADDER_ADD(17)
}
void p2_group_no_ladder(uint j, vec4 z) {                // no top-k / top-p: the draw needs only wk
    vec4 w = exp((z - p2_M) * p2_invT);
    w = mix(w, vec4(1.0), equal(z, vec4(p2_M)));
    wk[j] = mix(w, vec4(0.0), lessThan(w, vec4(FLT_MIN)));
}
#define P2_BODY(j, z) p2_group(j, z);
#define P2_NO_LADDER_BODY(j, z) p2_group_no_ladder(j, z);

float pow_safe(float x, float y) { return x > 0.0 ? exp2(y * log2(x)) : (y == 0.0 ? 1.0 : 0.0); }

void main() {
    t = gl_LocalInvocationID.x;
    penalty = u2f(prm[SP_PENALTY]);
    passes = 1u; listed = 0u; nonfinite = 0u; argmax = NONE;

    // 1-2: the override list, then P1: model statistics at temperature 1 (online softmax).
    ov_build();
    ov_apply();
    p1_m = NEG_INF; p1_s = 0.0; p1_ws = 0.0; p1_arg = NONE; p1_n = 0u; p1_bad = 0u;
    FOR_EACH_LOGITS_GROUP(P1_BODY)
    float m = p1_m, s = p1_s, ws = p1_ws; uint arg = p1_arg, na = p1_n;
    // argmax over the work-group (lowest index wins ties), in A/B (C holds the override list)
    sm[RA + t] = f2u(m); sm[RB + t] = arg;
    sync();
    for (uint st = WG >> 1u; st > 0u; st >>= 1u) {
        if (t < st) {
            float a = u2f(sm[RA + t]), b = u2f(sm[RA + t + st]);
            uint ia = sm[RB + t], ib = sm[RB + t + st];
            if (b > a || (b == a && ib < ia)) { sm[RA + t] = f2u(b); sm[RB + t] = ib; }
        }
        sync();
    }
    float M = u2f(sm[RA]); argmax = sm[RB];
    sync();
    float e = (s > 0.0) ? exp(m - M) : 0.0;
    acc[0] = na; acc[1] = p1_bad; acc[2] = f2u(s * e); acc[3] = f2u(s > 0.0 ? e * (ws + (m - M) * s) : 0.0);
    reduce_acc(4u, 2u, 0u, 2u * CAP);
    uint n_allowed = acc[0]; float S1 = u2f(acc[2]), W1 = u2f(acc[3]);
    nonfinite = acc[1];
    if (n_allowed == 0u) {
        ov_restore();
        float nan = u2f(0x7FC00000u);
        write_out(NONE, nan, nan, nan, nan, nan, nan, 0u, PATH_NONE);
        return;
    }
    float h_nats = max(0.0, log(S1) - W1 / S1);
    float h_model = h_nats / LN2, p_max = 1.0 / S1;

    // 4: temperature
    float T = u2f(prm[SP_TEMP]);
    uint rule = prm[SP_RULE];
    if (rule == 1u) {
        float range = u2f(prm[SP_DYN_RANGE]);
        if (range > 0.0) {
            float tmin = max(0.0, T - range), tmax = T + range;
            float hn = n_allowed > 1u ? h_nats / log(float(n_allowed)) : 0.0;
            T = tmin + (tmax - tmin) * pow_safe(hn, u2f(prm[SP_DYN_EXP]));
        }
    } else if (rule == 2u) {
        T = h_nats > 0.0 ? T * pow_safe(u2f(prm[SP_EDT_N]), u2f(prm[SP_EDT_THETA]) / h_nats) : 0.0;
    }
    if (!(T >= GREEDY_T)) {                              // the argmax's model probability is p_max
        ov_restore();
        write_out(argmax, 1.0, p_max, h_model, 0.0, p_max, 0.0, 1u, PATH_GREEDY);
        return;
    }

    // 5: P2, the weights and the ladder
    float invT = 1.0 / T, min_p = u2f(prm[SP_MIN_P]);
    uint key_minp = f2u(min_p);
    for (uint v = 0u; v < NL; v++) { lc[v] = 0.0; lm[v] = 0.0; }
    p2_M = M; p2_invT = invT;
    passes++;
    uint top_k = prm[SP_TOP_K];
    float top_p = u2f(prm[SP_TOP_P]);
    bool ladder = top_k > 0u || top_p < 1.0;
    if (ladder) FOR_EACH_LOGITS_GROUP(P2_BODY)
    else FOR_EACH_LOGITS_GROUP(P2_NO_LADDER_BODY)
    for (uint v = 0u; v < NL; v++) { acc[v] = uint(lc[v]); acc[NL + v] = f2u(lm[v]); }
    sync_all();                                          // wk complete and visible; logits read for the last time
    ov_restore();
    sync_all();                                          // restored logits visible (logit_of); C free
    if (ladder) reduce_acc(2u * NL, NL, 0u, 3u * CAP);   // (else unused zeros)
    uint L_cnt[NL]; float L_mass[NL];
    for (uint v = 0u; v < NL; v++) { L_cnt[v] = acc[v]; L_mass[v] = u2f(acc[NL + v]); }
    uint n_pos = L_cnt[NL - 1u]; float S_T = L_mass[NL - 1u];

    // 6: thresholds
    list_n = 0u; list_lo = KEY_HI; list_hi = KEY_HI;
    uint tau_k = KEY_MIN, cnt_k = n_pos; float mass_k = S_T;
    if (top_k > 0u && top_k < n_pos) {
        uint v = 0u;
        while (L_cnt[v] < top_k) v++;                    // L_cnt[NL - 1] = n_pos >= top_k stops it
        tau_k = search(LADDER[v], v == 0u ? KEY_HI : LADDER[v - 1u], L_cnt[v], L_mass[v],
                       v == 0u ? 0u : L_cnt[v - 1u], v == 0u ? 0.0 : L_mass[v - 1u], false, top_k, 0.0);
        cnt_k = res_cnt; mass_k = res_mass;
    }
    uint tau_p = KEY_MIN;
    if (top_p < 1.0) {
        float X = top_p * mass_k;
        if (list_n > 0u && list_hi == KEY_HI && list_lo <= tau_k) {
            uint i = list_first_mass(0.0, X);              // the top-k list holds the whole nucleus
            tau_p = list_key(i == NONE ? list_count_ge(tau_k) - 1u : i);
        } else {
            uint v = 0u;                                  // ladder levels above tau_k, then tau_k itself
            while (v < NL && LADDER[v] > tau_k && L_mass[v] < X) v++;
            bool at_k = v == NL || LADDER[v] <= tau_k;
            uint lo = at_k ? tau_k : LADDER[v];
            uint c_lo = at_k ? cnt_k : L_cnt[v]; float m_lo = at_k ? mass_k : L_mass[v];
            tau_p = search(lo, v == 0u ? KEY_HI : LADDER[v - 1u], c_lo, m_lo,
                           v == 0u ? 0u : L_cnt[v - 1u], v == 0u ? 0.0 : L_mass[v - 1u], true, 0u, X);
        }
    }
    uint tau = max(max(tau_k, tau_p), max(key_minp, KEY_MIN));

    // 7: the draw
    float u = u2f(prm[SP_U]);
    uint path;
    if (list_n > 0u && list_hi == KEY_HI && list_lo <= tau) { draw_from_list(tau, u); path = PATH_LIST; }
    else { draw_full(tau, u); path = PATH_FULL; }
    float h_final = max(0.0, (log(kept_mass) - kept_wlogw / kept_mass) / LN2);
    float pm = (t == 0u) ? exp(logit_of(drawn) - M) / S1 : 0.0;
    write_out(drawn, drawn_w / kept_mass, pm, h_model, h_final, p_max, T, kept_n, path);
}
