#version 450
// @variant attention_decode   PREFILL=0
// @variant attention_prefill  PREFILL=1
// @variant attention_prefill_shfl  PREFILL=1 SHFL=1
// @variant attention_decode_dual  PREFILL=0 DUAL=1
// @variant attention_decode_split  PREFILL=0 SPLIT=1
// @variant attention_decode_dual_split  PREFILL=0 DUAL=1 SPLIT=1
// @variant attention_decode_rope             PREFILL=0 ROPE=1
// @variant attention_decode_dual_rope        PREFILL=0 DUAL=1 ROPE=1
// @variant attention_decode_split_rope       PREFILL=0 SPLIT=1 ROPE=1
// @variant attention_decode_dual_split_rope  PREFILL=0 DUAL=1 SPLIT=1 ROPE=1
// @variant attention_decode_tx               PREFILL=0 TEXEL=1
// @variant attention_prefill_shfl_tx         PREFILL=1 SHFL=1 TEXEL=1
// @variant attention_decode_dual_tx          PREFILL=0 DUAL=1 TEXEL=1
// @variant attention_decode_split_tx         PREFILL=0 SPLIT=1 TEXEL=1
// @variant attention_decode_dual_split_tx    PREFILL=0 DUAL=1 SPLIT=1 TEXEL=1
// @variant attention_decode_rope_tx          PREFILL=0 ROPE=1 TEXEL=1
// @variant attention_decode_dual_rope_tx     PREFILL=0 DUAL=1 ROPE=1 TEXEL=1
// @variant attention_decode_split_rope_tx    PREFILL=0 SPLIT=1 ROPE=1 TEXEL=1
// @variant attention_decode_dual_split_rope_tx  PREFILL=0 DUAL=1 SPLIT=1 ROPE=1 TEXEL=1
// Causal grouped-query attention over the KV cache plus the current chunk, online softmax in f32.
// Token t of the chunk sits at position p = P_POS + t; query head h uses kv head h / G, G = HQ/HK:
//   s_j = SCALE * q[t,h,:] . key_j          (then SOFTCAP * tanh(s_j / SOFTCAP) if SOFTCAP > 0)
//   out[t,h,:] = sum_j softmax(s)_j value_j  over j in [lo, p], lo = WINDOW ? max(0, p+1-WINDOW) : 0
// key_j / value_j come from the cache for j < P_POS and from this chunk's k/v rows j - P_POS otherwise
// (cache writes of the running program are not visible to it). Rows t >= P_NTOK are written as 0.
// Bindings: 0 out f32[N,HQ,D] (w), 1 q f32[N,HQ,D] (r), 2 k f32[N,HK,D] (r), 3 v f32[N,HK,D] (r),
//   4 k_cache [L,HK,CTX,D] (r), 5 v_cache [L,HK,CTX,D] (r), 6 step u32[STEP_WORDS] (r). Head-major: the
//   keys one kv head's groups walk are contiguous, for the prefetchers (engine/ops/attention.py).
//   k, v and the caches are read as vec4: D % 4 == 0.
// Cache formats (KV16): f32 (0), or f16 (1: u32 words of two halves, packHalf2x16's order; D % 8 == 0,
//   so that one uvec4 load brings two vec4s). lavapipe's cost per key is its per-lane loads: halves
//   halve them (30 layers of SmolLM2's decode attention at 2,000 positions: 14.8 ms against 20.8).
//   Under KV16 the chunk's own keys and values are rounded to f16 as they are read (as_cached), so a
//   key reads the same in its own chunk as from the cache later. The key loops carry [[unroll]]:
//   without it Mesa's unroller gave up on the larger f16 body, and the arrays went to scratch memory
//   (37 ms instead of 15).
//
// attention_decode (any N; best where few query rows): a group takes HPG query heads of one kv head
//   for one token. Its WG threads form KS = WG/TEAM teams; team ks walks keys lo+ks, lo+ks+KS, ...,
//   each member owning D/TEAM dims (partial scores are summed through shared memory when TEAM > 1).
//   Every team keeps its own online-softmax state (running max m, sum l, acc) for its keys; at the
//   end the states merge: global max, rescale, then a tree of sums. Each key and value row is read
//   once per group. Grid: N * HK * G/HPG groups (HPG divides G); WG a power of two, TEAM | WG.
// attention_prefill (many rows, GPU-friendly): a thread takes HPG heads of one token (HPG divides G),
//   WG such threads per group; the group stages TK keys and values at a time in shared memory
//   (coalesced loads, shared by all threads); each thread keeps q and acc of its heads in registers.
//   Grid: HK * ceil(N*G/HPG / WG) groups.
// attention_prefill_shfl (CPU devices): the prefill layout without the shared-memory tile. lavapipe
//   turns every buffer or shared-memory load into a loop over the lanes of its SIMD program, so a key
//   staged in shared memory was still read lane by lane by each of the 8 rows of a program. Here,
//   for each key, lane s of a subgroup (SG lanes) loads vec4s s, s + SG, ... of the key and value rows
//   and the other lanes get them with subgroupShuffle (one vpermd on AVX2): each vec4 is loaded once
//   per subgroup. The key loop runs in uniform control flow over the group's keys (every lane takes
//   part in the shuffles); a row skips the keys it does not see with selects (alpha = 1, weight 0),
//   so its sums are those of attention_prefill, in the same order. SG = the subgroup size (launcher).
// Private arrays are only indexed by loops of <= 32 constant trips so that compilers (Mesa's NIR
// unroller: 32) can keep them in registers; lavapipe is 5-10x slower otherwise.
// attention_decode_dual (HARP cached mode, engine/forward.py): N = 2 rows are two streams at the
//   SAME position P_POS: row 0 over the caches at bindings 4/5, row 1 (the reframed stream) over its
//   own caches at bindings 7/8 (same layout); each row's own key is its chunk row.
// _split variants (decode; a long context spreads over many groups): the keys of a query row are cut
//   into SPLITS slices of at least SLICE_MIN keys, one group each (grid x SPLITS); a group writes its
//   online-softmax state (max, sum, acc per head) to `part`, and the last group of a row to finish
//   (an atomic count in `count`) merges the SPLITS states in slice order and writes the output, then
//   resets its count to 0 for the next replay. The merge reads in a fixed order, so the result does
//   not depend on which group finishes last. Bindings after the others: part f32 (rw, coherent),
//   count u32 (rw, coherent), sized by the launcher (engine/ops/attention.py).
// _rope variants (decode of one token, N = 1, or the dual pair): RoPE and the KV append fused in, so
//   a decode layer needs no rope dispatch and no barrier before attention. q and k arrive unrotated;
//   each group rotates its HPG query heads and its kv head's key (rope_half: pairs (j, j + ROT/2),
//   angle float(p) * inv_freq[rope_layer, j], the same sin_cos and products as rope.comp), into
//   shared memory; the group of the first head block and first slice also writes the
//   rotated key and the value row to cache row p (< CTX) of the stream's cache. Other groups of the
//   dispatch only read cache rows < P_POS, so the write races with nothing. QSCALE multiplies q's
//   rotated dims as in rope.comp. Binding after the others: inv_freq f32[L, ROT/2] (r); the caches
//   become writable. Push: layer (cache layer), rope_layer (inv_freq table).
// _tx variants (TEXEL = 1): the caches are bound as storage texel buffers (uimageBuffer rgba32ui, one
//   texel = one uvec4) and read with imageLoad: lavapipe runs a storage-buffer load as a scalar loop
//   over its SIMD lanes, an image load as one gather (a 48 MB reduction: 2.6 ms against 9.1). Same
//   results, the launcher picks them where the device allows (engine/ops/attention.py).
// Twin: reference.attention (attention_dual for the dual variant); _rope: reference.rope, then
//   reference.kv_append (kv_append_dual) and reference.attention (attention_dual).
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "common.glsl"
#include "params.glsl"
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint N = 1;          // tokens in the chunk (fixed at record time)
layout(constant_id = 2) const uint HQ = 1;         // query heads
layout(constant_id = 3) const uint HK = 1;         // kv heads (divides HQ)
layout(constant_id = 4) const uint D = 4;          // head dim, a multiple of 4
layout(constant_id = 5) const uint CTX = 1;        // cache positions
layout(constant_id = 6) const float SCALE = 1.0;
layout(constant_id = 7) const uint WINDOW = 0;     // sliding window in tokens, 0 = unlimited
layout(constant_id = 8) const float SOFTCAP = 0.0; // attention logit soft-capping (Gemma 2), 0 = off
layout(constant_id = 9) const uint HPG = 1;        // query heads per group (decode) / thread (prefill)
layout(constant_id = 10) const uint TEAM = 1;      // decode: threads per key (divides D/4 and WG)
layout(constant_id = 11) const uint TK = 16;       // prefill: keys per shared-memory tile
layout(constant_id = 12) const uint SPLITS = 1;    // _split: key slices per query row
layout(constant_id = 13) const uint SLICE_MIN = 64;  // _split: fewest keys per slice
layout(constant_id = 14) const uint ROT = 2;         // _rope: rotated dims (even, <= D)
layout(constant_id = 15) const float QSCALE = 1.0;   // _rope: multiplies q's rotated dims
layout(constant_id = 16) const uint SG = 8;          // _shfl: lanes per subgroup (the device's subgroup size)
layout(constant_id = 17) const uint KV16 = 0;        // 1: the caches hold f16 pairs (see "Cache formats")
layout(local_size_x_id = 0) in;
#ifndef ROPE
#define ROPE 0
#endif
#ifndef SHFL
#define SHFL 0
#endif
// One pipeline serves every layer: the caches stack layers ([L, HK, CTX, D]); pc.layer picks one.
#if ROPE
layout(push_constant) uniform Push { uint layer; uint rope_layer; } pc;
#define CACHE_ACCESS
#else
layout(push_constant) uniform Push { uint layer; } pc;
#define CACHE_ACCESS readonly
#endif
#define CACHE_OFF4 (pc.layer * (CTX * HK * D / 4u))
layout(binding = 0) writeonly buffer Out { float o[]; };
layout(binding = 1) readonly buffer Q { float q[]; };
layout(binding = 2) readonly buffer K { vec4 k[]; };
layout(binding = 3) readonly buffer V { vec4 v[]; };
#ifndef TEXEL
#define TEXEL 0
#endif
#if TEXEL
#define CACHE_BINDING(N, B) layout(binding = N, rgba32ui) uniform CACHE_ACCESS uimageBuffer B;
#define CLOAD(B, i) imageLoad(B, int(i))
#define CSTORE(B, i, u) imageStore(B, int(i), u)
#else
#define CACHE_BINDING(N, B) layout(binding = N) CACHE_ACCESS buffer B##_block { uvec4 B[]; };
#define CLOAD(B, i) B[i]
#define CSTORE(B, i, u) B[i] = (u)
#endif
CACHE_BINDING(4, kc)
CACHE_BINDING(5, vc)
layout(binding = 6) readonly buffer Step { uint step[]; };
#ifndef DUAL
#define DUAL 0
#endif
#if DUAL
CACHE_BINDING(7, kc2)
CACHE_BINDING(8, vc2)
#endif
#ifndef SPLIT
#define SPLIT 0
#endif
#if SPLIT && DUAL
layout(binding = 9) coherent buffer Part { float part_st[]; };
layout(binding = 10) coherent buffer Count { uint count[]; };
#elif SPLIT
layout(binding = 7) coherent buffer Part { float part_st[]; };
layout(binding = 8) coherent buffer Count { uint count[]; };
#endif
#if ROPE && SPLIT && DUAL
layout(binding = 11) readonly buffer F { float inv_freq[]; };
#elif ROPE && (SPLIT || DUAL)
layout(binding = 9) readonly buffer F { float inv_freq[]; };
#elif ROPE
layout(binding = 7) readonly buffer F { float inv_freq[]; };
#endif
#if ROPE
#include "sincos.glsl"
#endif

const uint G = HQ / HK;
const uint D4 = D / 4u;
const float NEG = -1e30;   // "no score yet"; finite so that exp(NEG - m) is 0, never NaN

// Cache access by vec4 index i4 (4 dims) of a cache buffer read as uvec4: f32 (KV16 = 0, one uvec4 =
// one vec4, bit-cast) or f16 pairs (KV16 = 1, one uvec4 = 8 halves = vec4s 2j, 2j + 1). _pair loads
// vec4s i4 and i4 + 1 (i4 even under KV16) with one f16 load; `two` = 0 leaves the second as 0 (f32).
vec4 unpack4(uvec2 h) { return vec4(unpackHalf2x16(h.x), unpackHalf2x16(h.y)); }
#define CACHE_READ(B)                                                                             \
    vec4 B##_vec4(uint i4) {                                                                     \
        if (KV16 != 0u) { uvec4 u = CLOAD(B, i4 >> 1); return unpack4((i4 & 1u) != 0u ? u.zw : u.xy); } \
        return uintBitsToFloat(CLOAD(B, i4));                                                    \
    }                                                                                            \
    void B##_pair(uint i4, bool two, out vec4 a, out vec4 b) {                                   \
        if (KV16 != 0u) { uvec4 u = CLOAD(B, i4 >> 1); a = unpack4(u.xy); b = unpack4(u.zw); return; } \
        a = uintBitsToFloat(CLOAD(B, i4));                                                       \
        b = two ? uintBitsToFloat(CLOAD(B, i4 + 1u)) : vec4(0.0);                                \
    }
// _store2 writes vec4s i4 and i4 + 1 (i4 even; `two` = 0: only the first, f32) as whole uvec4s.
#define CACHE_WRITE(B)                                                                            \
    void B##_store2(uint i4, vec4 a, vec4 b, bool two) {                                         \
        if (KV16 == 0u) {                                                                        \
            CSTORE(B, i4, floatBitsToUint(a));                                                   \
            if (two) CSTORE(B, i4 + 1u, floatBitsToUint(b));                                     \
            return;                                                                              \
        }                                                                                        \
        CSTORE(B, i4 >> 1, uvec4(packHalf2x16(a.xy), packHalf2x16(a.zw), packHalf2x16(b.xy), packHalf2x16(b.zw))); \
    }
// The chunk's own keys and values (f32 buffers, the rotated own key in shared memory) as the cache
// would hold them: rounded to f16 under KV16, so that a key reads the same whether it is in this
// chunk or an earlier one (results do not depend on where chunks begin), as llama.cpp's store-then-
// read does.
vec4 as_cached(vec4 x) {
    return KV16 != 0u ? unpack4(uvec2(packHalf2x16(x.xy), packHalf2x16(x.zw))) : x;
}
#define PLAIN_PAIR(B)                                                                             \
    void B##_pair(uint i4, bool two, out vec4 a, out vec4 b) {                                   \
        a = as_cached(B[i4]);                                                                    \
        b = two ? as_cached(B[i4 + 1u]) : vec4(0.0);                                             \
    }
CACHE_READ(kc)
CACHE_READ(vc)
PLAIN_PAIR(k)
PLAIN_PAIR(v)
#if DUAL
CACHE_READ(kc2)
CACHE_READ(vc2)
#endif
#if ROPE
CACHE_WRITE(kc)
CACHE_WRITE(vc)
  #if DUAL
CACHE_WRITE(kc2)
CACHE_WRITE(vc2)
  #endif
#endif

float cap(float s) {
    if (SOFTCAP > 0.0) {   // tanh without exp overflow: 1 - 2 / (exp(2x) + 1) on a clamped x
        float x = clamp(s / SOFTCAP, -15.0, 15.0);
        s = SOFTCAP * (1.0 - 2.0 / (exp(2.0 * x) + 1.0));
    }
    return s;
}

// First key position visible from position p (inclusive).
uint window_lo(uint p) {
    return (WINDOW > 0u && p + 1u > WINDOW) ? p + 1u - WINDOW : 0u;
}

#if PREFILL == 0
// ------------------------------------------------------------------------------------------ decode
const uint DS4 = D4 / TEAM;    // vec4s of a head row owned by one thread
const uint KS = WG / TEAM;     // teams = keys per round
shared float part[2u * WG * HPG];                  // partial scores [round & 1][ks][g][member]
shared float mx[KS * HPG];                         // merge: running maxima
shared vec4 mrg[(KS / 2u) * HPG * D4 + 1u];        // merge: upper half's acc
shared float mrg_l[(KS / 2u) * HPG + 1u];          // merge: upper half's l

// One pass over keys [J0, J1) of one source (cache or chunk; two loops, not a branch per key,
// because SIMD-on-CPU drivers run both sides of a divergent branch). ROW(j) = row index in KB/VB.
// KROW(j) = the key's row in KB where it differs (the _rope variants' rotated key in shared memory).
#define KEY_PASS(KB, VB, OFF, J0, J1, ROW, KROW)                                                  \
    for (uint jr = (J0); jr < (J1); jr += KS) {                                             \
        uint j = jr + ks;                                                                    \
        bool has = j < (J1);                                                                 \
        uint b = (has ? (ROW) : 0u) * D4 + dt * DS4;                                         \
        uint bk = (has ? (KROW) : 0u) * D4 + dt * DS4;                                       \
        float s[HPG];                                                                        \
        [[unroll]] for (uint g = 0u; g < HPG; g++) s[g] = 0.0;                                          \
        [[unroll]] for (uint c = 0u; c < DS4; c += 2u) {   /* vec4s in pairs: one f16 cache load */    \
            vec4 k0, k1;                                                                     \
            KB##_pair(OFF + bk + c, c + 1u < DS4, k0, k1);                                   \
            [[unroll]] for (uint g = 0u; g < HPG; g++) s[g] += dot(qv[g * DS4 + c], k0);                \
            if (c + 1u < DS4)                                                                \
                [[unroll]] for (uint g = 0u; g < HPG; g++) s[g] += dot(qv[g * DS4 + c + 1u], k1);       \
        }                                                                                    \
        if (TEAM > 1u) {                                                                     \
            uint pb = (round_no & 1u) * WG * HPG + ks * HPG * TEAM;                          \
            [[unroll]] for (uint g = 0u; g < HPG; g++) part[pb + g * TEAM + dt] = s[g];                 \
            barrier();                                                                       \
            [[unroll]] for (uint g = 0u; g < HPG; g++) {                                                \
                float sum = 0.0;                                                             \
                for (uint u = 0u; u < TEAM; u++) sum += part[pb + g * TEAM + u];             \
                s[g] = sum;                                                                  \
            }                                                                                \
            round_no++;                                                                      \
        }                                                                                    \
        if (has) {                                                                           \
            float alpha[HPG], w[HPG];                                                        \
            [[unroll]] for (uint g = 0u; g < HPG; g++) {                                                \
                float sg = cap(s[g]), mn = max(m[g], sg);                                    \
                alpha[g] = exp(m[g] - mn);                                                   \
                w[g] = exp(sg - mn);                                                         \
                l[g] = l[g] * alpha[g] + w[g];                                               \
                m[g] = mn;                                                                   \
            }                                                                                \
            [[unroll]] for (uint c = 0u; c < DS4; c += 2u) {                                            \
                vec4 v0, v1;                                                                 \
                VB##_pair(OFF + b + c, c + 1u < DS4, v0, v1);                                \
                [[unroll]] for (uint g = 0u; g < HPG; g++) acc[g * DS4 + c] = acc[g * DS4 + c] * alpha[g] + w[g] * v0; \
                if (c + 1u < DS4)                                                            \
                    [[unroll]] for (uint g = 0u; g < HPG; g++)                                          \
                        acc[g * DS4 + c + 1u] = acc[g * DS4 + c + 1u] * alpha[g] + w[g] * v1; \
            }                                                                                \
        }                                                                                    \
    }

#if SPLIT
shared uint last_group;
#endif
#if ROPE
const uint R2 = ROT / 2u;
shared float qs[HPG * D];      // the group's query heads, rotated
shared vec4 kown[D4];          // the token's own key, rotated
PLAIN_PAIR(kown)

// (sin, cos) of pair j's angle at position p, as rope.comp computes it.
vec2 rope_sc(uint j, uint p) {
    precise float a = float(p) * inv_freq[pc.rope_layer * R2 + j];
    return sin_cos(a);
}

// Dim dd of q's head row at qb, rotated (times QSCALE where rotated).
float rope_q(uint qb, uint dd, uint p) {
    if (dd >= ROT) return q[qb + dd];
    uint j = dd < R2 ? dd : dd - R2;
    vec2 sc = rope_sc(j, p);
    float x0 = q[qb + j], x1 = q[qb + j + R2];
    return (dd < R2 ? x0 * sc.y - x1 * sc.x : x1 * sc.y + x0 * sc.x) * QSCALE;
}

float k_at(uint i) { return k[i >> 2][i & 3u]; }

// Dim dd of k's head row at float offset kb, rotated.
float rope_k(uint kb, uint dd, uint p) {
    if (dd >= ROT) return k_at(kb + dd);
    uint j = dd < R2 ? dd : dd - R2;
    vec2 sc = rope_sc(j, p);
    float x0 = k_at(kb + j), x1 = k_at(kb + j + R2);
    return dd < R2 ? x0 * sc.y - x1 * sc.x : x1 * sc.y + x0 * sc.x;
}
#endif

void main() {
    const uint NHB = G / HPG;
    uint gid = flat_group_id();
    if (gid >= N * HK * NHB * SPLITS) return;
    uint split = gid % SPLITS;
    gid /= SPLITS;                                      // the query row's group, as without splits
    uint t = gid / (HK * NHB), kvh = (gid / NHB) % HK, g0 = (gid % NHB) * HPG;
    uint tid = gl_LocalInvocationID.x, ks = tid / TEAM, dt = tid % TEAM;
    uint pos0 = step[P_POS], ntok = min(step[P_NTOK], N);
    uint obase = (t * HQ + kvh * G + g0) * D;          // the group's HPG heads are contiguous
    if (t >= ntok) {
        for (uint i = tid; i < HPG * D; i += WG) o[obase + i] = 0.0;
        return;
    }
    uint p = pos0 + (DUAL != 0 ? 0u : t), lo = window_lo(p), hi = p + 1u;
    if (SPLITS > 1u) {   // this group's slice of [lo, hi); slices past the end are empty
        uint slice = max(SLICE_MIN, (hi - lo + SPLITS - 1u) / SPLITS);
        lo = min(hi, lo + split * slice);
        hi = min(hi, lo + slice);
    }

#if ROPE
    // Rotate the group's query heads and its own key once, shared by all teams; append the key
    // and value to the cache (one group per kv head and stream does).
    for (uint i = tid; i < HPG * D; i += WG) qs[i] = rope_q(obase + (i / D) * D, i % D, p);
    uint krow = t * HK + kvh, kb = krow * D;
    for (uint c = tid; c < D4; c += WG) {
        kown[c] = vec4(rope_k(kb, 4u * c, p), rope_k(kb, 4u * c + 1u, p),
                       rope_k(kb, 4u * c + 2u, p), rope_k(kb, 4u * c + 3u, p));
    }
    barrier();
    if (g0 == 0u && split == 0u && p < CTX) {
        uint dst = CACHE_OFF4 + (kvh * CTX + p) * D4;
        for (uint c = 2u * tid; c < D4; c += 2u * WG) {   // pairs of vec4s: whole uvec4s under KV16
            bool two = c + 1u < D4;
            uint c1 = min(c + 1u, D4 - 1u);   // (in bounds; unused when !two)
            vec4 k1 = kown[c1], v1 = v[krow * D4 + c1];
  #if DUAL
            if (t == 1u) {
                kc2_store2(dst + c, kown[c], k1, two);
                vc2_store2(dst + c, v[krow * D4 + c], v1, two);
                continue;
            }
  #endif
            kc_store2(dst + c, kown[c], k1, two);
            vc_store2(dst + c, v[krow * D4 + c], v1, two);
        }
    }
#endif
    vec4 qv[HPG * DS4], acc[HPG * DS4];
    float m[HPG], l[HPG];
    for (uint g = 0u; g < HPG; g++) {
        m[g] = NEG;
        l[g] = 0.0;
        for (uint c = 0u; c < DS4; c++) {
#if ROPE
            uint e = g * D + 4u * (dt * DS4 + c);
            qv[g * DS4 + c] = vec4(qs[e], qs[e + 1u], qs[e + 2u], qs[e + 3u]) * SCALE;
#else
            uint e = obase + g * D + 4u * (dt * DS4 + c);
            qv[g * DS4 + c] = vec4(q[e], q[e + 1u], q[e + 2u], q[e + 3u]) * SCALE;
#endif
            acc[g * DS4 + c] = vec4(0.0);
        }
    }
    uint round_no = 0u;
#if DUAL
    if (t == 1u) {   // uniform per group: the barriers inside stay in uniform control flow
        KEY_PASS(kc2, vc2, CACHE_OFF4, lo, min(min(hi, pos0), CTX), kvh * CTX + j, kvh * CTX + j)
    } else {
        KEY_PASS(kc, vc, CACHE_OFF4, lo, min(min(hi, pos0), CTX), kvh * CTX + j, kvh * CTX + j)
    }
#else
    KEY_PASS(kc, vc, CACHE_OFF4, lo, min(min(hi, pos0), CTX), kvh * CTX + j, kvh * CTX + j)
#endif
#if ROPE        // the one own key (row t at p = pos0), rotated in shared memory
    KEY_PASS(kown, v, 0u, max(lo, pos0), hi, krow, 0u)
#elif DUAL
    KEY_PASS(k, v, 0u, max(lo, pos0), hi, (j - pos0 + t) * HK + kvh, (j - pos0 + t) * HK + kvh)
#else
    KEY_PASS(k, v, 0u, max(lo, pos0), hi, (j - pos0) * HK + kvh, (j - pos0) * HK + kvh)
#endif

    // Merge the teams' states: global max per head, rescale, tree of sums over teams.
    if (dt == 0u)
        for (uint g = 0u; g < HPG; g++) mx[ks * HPG + g] = m[g];
    barrier();
    for (uint w = KS / 2u; w > 0u; w >>= 1) {
        if (dt == 0u && ks < w)
            for (uint g = 0u; g < HPG; g++) mx[ks * HPG + g] = max(mx[ks * HPG + g], mx[(ks + w) * HPG + g]);
        barrier();
    }
    for (uint g = 0u; g < HPG; g++) {
        float f = exp(m[g] - mx[g]);          // 0 for a team that saw no key (m = NEG)
        l[g] *= f;
        for (uint c = 0u; c < DS4; c++) acc[g * DS4 + c] *= f;
    }
    for (uint w = KS / 2u; w > 0u; w >>= 1) {
        if (ks >= w && ks < 2u * w) {
            uint slot = ks - w;
            for (uint g = 0u; g < HPG; g++) {
                if (dt == 0u) mrg_l[slot * HPG + g] = l[g];
                for (uint c = 0u; c < DS4; c++) mrg[(slot * HPG + g) * D4 + dt * DS4 + c] = acc[g * DS4 + c];
            }
        }
        barrier();
        if (ks < w) {
            for (uint g = 0u; g < HPG; g++) {
                l[g] += mrg_l[ks * HPG + g];
                for (uint c = 0u; c < DS4; c++) acc[g * DS4 + c] += mrg[(ks * HPG + g) * D4 + dt * DS4 + c];
            }
        }
        barrier();
    }
#if SPLIT
    // This slice's state: per head its max mx[g], sum l and acc (relative to mx[g]), D + 2 floats.
    const uint ST = D + 2u;
    uint sbase = (gid * SPLITS + split) * HPG * ST;
    if (ks == 0u) {
        for (uint g = 0u; g < HPG; g++) {
            for (uint c = 0u; c < DS4; c++) {
                uint e = sbase + g * ST + 4u * (dt * DS4 + c);
                vec4 r = acc[g * DS4 + c];
                part_st[e] = r.x; part_st[e + 1u] = r.y; part_st[e + 2u] = r.z; part_st[e + 3u] = r.w;
            }
            if (dt == 0u) { part_st[sbase + g * ST + D] = mx[g]; part_st[sbase + g * ST + D + 1u] = l[g]; }
        }
    }
    memoryBarrierBuffer();   // the state is visible device-wide before the count says so
    barrier();
    if (tid == 0u) last_group = atomicAdd(count[gid], 1u) == SPLITS - 1u ? 1u : 0u;
    barrier();
    if (last_group == 0u) return;
    memoryBarrierBuffer();
    for (uint i = tid; i < HPG * D; i += WG) {   // the last group merges the slices in order
        uint g = i / D, d = i % D;
        uint hb = gid * SPLITS * HPG * ST + g * ST;
        float mm = NEG;
        for (uint sp = 0u; sp < SPLITS; sp++) mm = max(mm, part_st[hb + sp * HPG * ST + D]);
        float ls = 0.0, a = 0.0;
        for (uint sp = 0u; sp < SPLITS; sp++) {
            uint b = hb + sp * HPG * ST;
            float f = exp(part_st[b + D] - mm);   // 0 for an empty slice (max NEG)
            ls += part_st[b + D + 1u] * f;
            a += part_st[b + d] * f;
        }
        o[obase + i] = a / ls;
    }
    if (tid == 0u) count[gid] = 0u;   // ready for the next replay (nothing else touches it now)
#else
    if (ks == 0u) {
        for (uint g = 0u; g < HPG; g++) {
            float inv = 1.0 / l[g];
            for (uint c = 0u; c < DS4; c++) {
                uint e = obase + g * D + 4u * (dt * DS4 + c);
                vec4 r = acc[g * DS4 + c] * inv;
                o[e] = r.x; o[e + 1u] = r.y; o[e + 2u] = r.z; o[e + 3u] = r.w;
            }
        }
    }
#endif
}

#else
// ----------------------------------------------------------------------------------------- prefill
// Both layouts: a thread per row with its q, acc and softmax state; they differ only in how a key
// reaches the threads (a shared-memory tile, or subgroup shuffles: _shfl).
#if SHFL
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
const uint CPS = (D4 + SG - 1u) / SG;    // vec4s of a key row each lane loads
#else
shared vec4 ks4[TK * D4];
shared vec4 vs4[TK * D4];
#endif

void main() {
    const uint NHB = G / HPG;
    const uint ROWS = N * NHB;                   // a thread takes HPG heads of one token
    const uint NRB = (ROWS + WG - 1u) / WG;
    uint gid = flat_group_id();
    if (gid >= HK * NRB) return;
    uint kvh = gid / NRB, rb = gid % NRB;
    uint tid = gl_LocalInvocationID.x, r = rb * WG + tid;
    uint t = r / NHB, g0 = (r % NHB) * HPG;
    uint pos0 = step[P_POS], ntok = min(step[P_NTOK], N);
    bool row_exists = r < ROWS;
    bool live = row_exists && t < ntok;
    uint obase = (t * HQ + kvh * G + g0) * D;
    uint t_first = (rb * WG) / NHB;
    if (t_first >= ntok) {            // the whole group is past the valid tokens
        if (row_exists) for (uint i = 0u; i < HPG * D; i++) o[obase + i] = 0.0;
        return;
    }
    uint t_last = min(min((rb * WG + WG - 1u) / NHB, N - 1u), ntok - 1u);
    uint hi = pos0 + t_last + 1u, lo = window_lo(pos0 + t_first);
    uint p = pos0 + t, my_lo = window_lo(p);

    vec4 qr[HPG * D4], acc[HPG * D4];
    float m[HPG], l[HPG];
    for (uint g = 0u; g < HPG; g++) {
        m[g] = NEG;
        l[g] = 0.0;
        for (uint c = 0u; c < D4; c++) {
            uint e = live ? obase + g * D + 4u * c : 0u;
            qr[g * D4 + c] = vec4(q[e], q[e + 1u], q[e + 2u], q[e + 3u]) * SCALE;
            acc[g * D4 + c] = vec4(0.0);
        }
    }

#if SHFL
    uint sl = gl_SubgroupInvocationID;
    for (uint j = lo; j < hi; j++) {   // uniform in the group
        // This lane's vec4s of key and value row j: cache row j, or chunk row j - pos0.
        vec4 kp[CPS], vp[CPS];
        for (uint cc = 0u; cc < CPS; cc++) {
            uint c = min(cc * SG + sl, D4 - 1u);
            if (j < pos0) {
                uint b = CACHE_OFF4 + (kvh * CTX + min(j, CTX - 1u)) * D4 + c;
                kp[cc] = kc_vec4(b);
                vp[cc] = vc_vec4(b);
            } else {
                uint b = ((j - pos0) * HK + kvh) * D4 + c;
                kp[cc] = as_cached(k[b]);
                vp[cc] = as_cached(v[b]);
            }
        }
        bool ok = live && j >= my_lo && j <= p;
        float s[HPG];
        for (uint g = 0u; g < HPG; g++) s[g] = 0.0;
        for (uint cc = 0u; cc < CPS; cc++) {
            for (uint i = 0u; i < SG; i++) {
                vec4 kx = subgroupShuffle(kp[cc], i);
                uint c = cc * SG + i;
                if (c < D4)
                    for (uint g = 0u; g < HPG; g++) s[g] += dot(qr[g * D4 + c], kx);
            }
        }
        float alpha[HPG], w[HPG];
        for (uint g = 0u; g < HPG; g++) {
            float sg = ok ? cap(s[g]) : NEG, mn = max(m[g], sg);
            alpha[g] = exp(m[g] - mn);        // 1 for a key the row does not see
            w[g] = ok ? exp(sg - mn) : 0.0;
            l[g] = l[g] * alpha[g] + w[g];
            m[g] = mn;
        }
        for (uint cc = 0u; cc < CPS; cc++) {
            for (uint i = 0u; i < SG; i++) {
                vec4 vx = subgroupShuffle(vp[cc], i);
                uint c = cc * SG + i;
                if (c < D4)
                    for (uint g = 0u; g < HPG; g++) acc[g * D4 + c] = acc[g * D4 + c] * alpha[g] + w[g] * vx;
            }
        }
    }
#else
    for (uint j0 = lo; j0 < hi; j0 += TK) {
        // Stage keys/values j0.. (cache rows, then chunk rows: no per-element branch on the source).
        uint n_cache = j0 < pos0 ? min(min(TK, pos0 - j0), CTX > j0 ? CTX - j0 : 0u) : 0u;
        for (uint e = tid; e < n_cache * D4; e += WG) {
            uint b = (kvh * CTX + j0 + e / D4) * D4 + e % D4;
            ks4[e] = kc_vec4(CACHE_OFF4 + b);
            vs4[e] = vc_vec4(CACHE_OFF4 + b);
        }
        uint c0 = max(j0, pos0), c1 = min(j0 + TK, hi);
        uint off = (c0 - j0) * D4, n_chunk = c1 > c0 ? c1 - c0 : 0u;
        for (uint e = tid; e < n_chunk * D4; e += WG) {
            uint b = ((c0 - pos0 + e / D4) * HK + kvh) * D4 + e % D4;
            ks4[off + e] = as_cached(k[b]);
            vs4[off + e] = as_cached(v[b]);
        }
        barrier();
        if (live) {
            uint i_end = min(TK, p + 1u - min(p + 1u, j0));       // keys j0 + i <= p
            uint i_beg = my_lo > j0 ? my_lo - j0 : 0u;             // keys j0 + i >= my_lo
            for (uint i = i_beg; i < i_end; i++) {
                float s[HPG];
                for (uint g = 0u; g < HPG; g++) s[g] = 0.0;
                for (uint c = 0u; c < D4; c++) {
                    vec4 kx = ks4[i * D4 + c];
                    for (uint g = 0u; g < HPG; g++) s[g] += dot(qr[g * D4 + c], kx);
                }
                float alpha[HPG], w[HPG];
                for (uint g = 0u; g < HPG; g++) {
                    float sg = cap(s[g]), mn = max(m[g], sg);
                    alpha[g] = exp(m[g] - mn);
                    w[g] = exp(sg - mn);
                    l[g] = l[g] * alpha[g] + w[g];
                    m[g] = mn;
                }
                for (uint c = 0u; c < D4; c++) {
                    vec4 vx = vs4[i * D4 + c];
                    for (uint g = 0u; g < HPG; g++) acc[g * D4 + c] = acc[g * D4 + c] * alpha[g] + w[g] * vx;
                }
            }
        }
        barrier();
    }
#endif
    if (row_exists) {
        for (uint g = 0u; g < HPG; g++) {
            float inv = live ? 1.0 / l[g] : 0.0;
            for (uint c = 0u; c < D4; c++) {
                uint e = obase + g * D + 4u * c;
                vec4 res = acc[g * D4 + c] * inv;
                o[e] = res.x; o[e + 1u] = res.y; o[e + 2u] = res.z; o[e + 3u] = res.w;
            }
        }
    }
}
#endif
