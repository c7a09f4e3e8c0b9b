// Decoding the GPU weight layout (engine/quant.py documents it). Before including, define
//   WFMT: 0 f32, 1 f16, 2 q8_0, 3 q4_0, 4 q4_1, 5 q5_0, 6 q5_1, 7 q4_k, 8 q5_k, 9 q6_k, 10 iq4_nl, 11 iq4_xs,
//         12 q2_k, 13 q3_k
// (5..9 are GGUF's 5-bit and k-quant types in the layout of engine/kquant.py, 10 and 11 its non-linear
// 4-bit types in the layout of engine/iquant.py: q4 nibbles, each code looked up in KVALUES; iq4_xs's
// scales are 2 words per 256-column super-block, d | scales_h << 16 and scales_l; 12 and 13 its 2- and
// 3-bit k-quants in the layout of engine/kquant23.py: 2-bit words, q3_k's high-bit words, 16-weight
// sub-blocks; RUN kernels only)
// and declare `uint wq[]` (quants, one row = WROW_WORDS words) and, for q formats, `uint ws[]` (scales).
// COLS must be a constant in scope. Block b of row r has flat index r * (COLS/32) + b.
// Kernels that load whole 16-byte words themselves (matvec, matmul) define WEIGHTS_NO_SCALAR first:
// they get the layout macros and the vector decoders at the end, not block_scale / weight_at.
#define FMT_F32  0
#define FMT_F16  1
#define FMT_Q8_0 2
#define FMT_Q4_0 3
#define FMT_Q4_1 4
#define FMT_Q5_0 5
#define FMT_Q5_1 6
#define FMT_Q4_K 7
#define FMT_Q5_K 8
#define FMT_Q6_K 9
#define FMT_IQ4_NL 10
#define FMT_IQ4_XS 11
#define FMT_Q2_K 12
#define FMT_Q3_K 13
// quants with a high-bit tail after the row's low nibbles (engine/kquant.py)
#define WFMT_HIGH (WFMT == FMT_Q5_0 || WFMT == FMT_Q5_1 || WFMT == FMT_Q5_K || WFMT == FMT_Q6_K)
// 4-bit codes standing for the int8 KVALUES (engine/iquant.py)
#define WFMT_IQ4 (WFMT == FMT_IQ4_NL || WFMT == FMT_IQ4_XS)
// 2-bit words per 32-block, (d * sub-block scale) per 16 weights (engine/kquant23.py)
#define WFMT_K23 (WFMT == FMT_Q2_K || WFMT == FMT_Q3_K)

#if WFMT == FMT_F32
  #define WROW_WORDS (COLS)
#elif WFMT == FMT_F16
  #define WROW_WORDS ((COLS + 1u) / 2u)
#elif WFMT == FMT_Q8_0
  #define WROW_WORDS ((COLS / 32u) * 8u)
#elif WFMT == FMT_Q5_0 || WFMT == FMT_Q5_1
  #define WROW_WORDS ((COLS / 32u) * 4u + ((COLS / 32u + 3u) / 4u) * 4u)
#elif WFMT == FMT_Q5_K
  #define WROW_WORDS ((COLS / 32u) * 5u)
#elif WFMT == FMT_Q6_K
  #define WROW_WORDS ((COLS / 32u) * 6u + COLS / 64u)
#elif WFMT == FMT_Q2_K
  #define WROW_WORDS ((COLS / 32u) * 2u + COLS / 64u)   // 2-bit words, then 4 words of scale bytes per super-block
#elif WFMT == FMT_Q3_K
  #define WROW_WORDS ((COLS / 32u) * 3u)                 // 2-bit words, then one high-bit word per block
#else
  #define WROW_WORDS ((COLS / 32u) * 4u)
#endif

// Q4_K / Q5_K: (d*sc, -(dmin*m)) of sub-block j = 4h + jj (0..7) from the super-block's head words
// s = (d | dmin << 16, 12 bytes of packed 6-bit scales and mins), unpacked as ggml's get_scale_min_k4;
// the products in float32, as gguf.quants computes them. Selects and shifts only: a vector indexed
// by a per-lane value becomes a gather through the stack on lavapipe (callers pass jj as a constant
// where the run's alignment makes it one).
vec2 k_scale_min(uvec4 s, uint jj, uint h) {
    vec2 dd = unpackHalf2x16(s.x);
    uint y = s.y >> (8u * jj), z = s.z >> (8u * jj), w = s.w >> (8u * jj);
    uint sc = h == 0u ? (y & 63u) : ((w & 15u) | ((y >> 2) & 48u));
    uint m = h == 0u ? (z & 63u) : (((w >> 4) & 15u) | ((z >> 2) & 48u));
    return vec2(dd.x * float(sc), -(dd.y * float(m)));
}
// The same for a whole super-block's run (RUN 8), sub-block j = b a constant: each 6-bit field masked
// in place (sc * 2^(8jj), the sign bit clear) and the power of two folded into d and dmin, so one
// AND (two and an OR for j >= 4) per value instead of shifts down; the product rounds once, to the
// same float as d * sc.
vec2 k_scale_min_at(uvec4 s, uint j) {
    uint jj = j & 3u, lo = 63u << (8u * jj);
    vec2 dd = unpackHalf2x16(s.x) * (1.0 / float(1u << (8u * jj)));
    uint sc = j < 4u ? (s.y & lo) : ((s.w & (15u << (8u * jj))) | ((s.y >> 2) & (48u << (8u * jj))));
    uint m = j < 4u ? (s.z & lo) : (((s.w >> 4) & (15u << (8u * jj))) | ((s.z >> 2) & (48u << (8u * jj))));
    return vec2(dd.x * float(sc), -(dd.y * float(m)));
}
uint pick4(uvec4 s, uint i) { return i == 0u ? s.x : (i == 1u ? s.y : (i == 2u ? s.z : s.w)); }
// iq4: llama.cpp's kvalues_iq4nl as 16 int8 bytes (code q at byte q); picked with selects and a
// shift, not an indexed array (a per-lane index into an array becomes a stack gather on lavapipe).
const uint IQ4_KV0 = 0xBFAD9881u, IQ4_KV1 = 0xF6EADDCFu, IQ4_KV2 = 0x26190D01u, IQ4_KV3 = 0x71594535u;
vec4 iq4_kv(uvec4 q) {
    uvec4 w = mix(mix(uvec4(IQ4_KV0), uvec4(IQ4_KV1), greaterThanEqual(q, uvec4(4u))),
                  mix(uvec4(IQ4_KV2), uvec4(IQ4_KV3), greaterThanEqual(q, uvec4(12u))), greaterThanEqual(q, uvec4(8u)));
    return vec4(ivec4(w << (24u - 8u * (q & 3u))) >> 24);
}
// The 8 weights' codes of quant word w: bytes k = 0..3 hold weight 4wi+k (low) and 16+4wi+k (high).
vec4 iq4_lo(uint w) { return iq4_kv((uvec4(w) >> uvec4(0u, 8u, 16u, 24u)) & 15u); }
vec4 iq4_hi(uint w) { return iq4_kv((uvec4(w) >> uvec4(4u, 12u, 20u, 28u)) & 15u); }
// IQ4_XS: d * (ls - 32) of sub-block ib (0..7) from the super-block's head s = (d | scales_h << 16,
// scales_l): ls = 4 bits of scales_l at 4ib, 2 of scales_h at 2ib above them; the product in float32,
// as gguf.quants computes it.
float iq4xs_scale(uvec2 s, uint ib) {
    uint ls = ((s.y >> (4u * ib)) & 15u) | (((s.x >> (16u + 2u * ib)) & 3u) << 4);
    precise float dl = unpackHalf2x16(s.x).x * float(int(ls) - 32);
    return dl;
}
// Q2_K / Q3_K (engine/kquant23.py). The 4 codes of quant word w's field f (bits 2f of bytes k = 0..3:
// weights 4(4u+f)+k of the block, u the word's half) at bytes k, so that masking gives q * 2^(8k);
// q3_k ORs in its high bits from word h (bit 4u+f = j of byte k) at bit 2 of each byte.
const uvec4 Q2_MASK = uvec4(0x3u, 0x300u, 0x30000u, 0x3000000u);
const uvec4 Q3_MASK = uvec4(0x7u, 0x700u, 0x70000u, 0x7000000u);
vec4 q2_v(uint w, uint f) { return vec4(uvec4(w >> (2u * f)) & Q2_MASK); }
vec4 q3_v(uint w, uint h, uint f, uint j) {
    return vec4(uvec4(((w >> (2u * f)) & 0x03030303u) | (((h >> j) & 0x01010101u) << 2)) & Q3_MASK);
}
// Q2_K: (d*sc, dmin*m) of the two 16-weight sub-blocks of a block from its scale-byte pair sw >> sh
// (bytes 2bs, 2bs+1 of the super-block's 16) and dd = (d, dmin); the products in float32, as gguf.
vec4 q2k_scales(uint sw, uint sh, vec2 dd) {
    uint a = sw >> sh, b = sw >> (sh + 8u);
    precise vec4 r = vec4(dd.x, dd.y, dd.x, dd.y) * vec4(uvec4(a & 15u, (a >> 4) & 15u, b & 15u, (b >> 4) & 15u));
    return r;
}
// Q3_K: a super-block's 14 scale bytes (12 packed 6-bit scales, then f16 d) from the 4 words holding
// them; odd: they start at byte 2 (super-block S is at byte 14S of the flat scales buffer).
uvec4 q3k_head(uint w0, uint w1, uint w2, uint w3, bool odd) {
    return odd ? uvec4((w0 >> 16) | (w1 << 16), (w1 >> 16) | (w2 << 16), (w2 >> 16) | (w3 << 16), w3 >> 16)
               : uvec4(w0, w1, w2, w3);
}
// d * (s - 32) of sub-block j (0..15): s's low 4 bits in byte j%8 at 4(j/8), its high 2 in byte
// 8 + j%4 at 2(j/4) (ggml's packing); the product in float32, as gguf.quants computes it.
float q3k_scale(uvec4 hd, uint j) {
    uint lo = (pick4(hd, (j & 7u) >> 2) >> (8u * (j & 3u) + 4u * (j >> 3))) & 15u;
    uint hi = (hd.z >> (8u * (j & 3u) + 2u * (j >> 2))) & 3u;
    precise float dl = unpackHalf2x16(hd.w).x * float(int(lo | (hi << 4)) - 32);
    return dl;
}
#ifndef WEIGHTS_NO_SCALAR
// d (and m for q4_1) of flat block index `blk`.
vec2 block_scale(uint blk) {
#if WFMT == FMT_Q4_1
    return unpackHalf2x16(ws[blk]);
#elif WFMT == FMT_Q8_0 || WFMT == FMT_Q4_0
    uint w = ws[blk >> 1];
    return vec2(unpackHalf2x16((blk & 1u) == 0u ? w : (w >> 16)).x, 0.0);
#else
    return vec2(1.0, 0.0);
#endif
}

// One weight, the simple way (gathers and tests; hot kernels decode whole blocks themselves).
float weight_at(uint row, uint col) {
#if WFMT == FMT_F32
    return uintBitsToFloat(wq[row * COLS + col]);
#elif WFMT == FMT_F16
    vec2 h = unpackHalf2x16(wq[row * WROW_WORDS + (col >> 1)]);
    return (col & 1u) == 0u ? h.x : h.y;
#elif WFMT_IQ4
    // engine/iquant.py's layout; `precise`: one rounding per product, as gguf's numpy decoder
    uint b = col >> 5, j = col & 31u, jj = j & 15u;
    uint w = wq[row * WROW_WORDS + b * 4u + (jj >> 2)];
    float kv = iq4_kv(uvec4((w >> (8u * (jj & 3u) + (j >= 16u ? 4u : 0u))) & 15u)).x;
  #if WFMT == FMT_IQ4_NL
    uint f = row * (COLS / 32u) + b;
    precise float v = unpackHalf2x16((f & 1u) == 0u ? ws[f >> 1] : ws[f >> 1] >> 16).x * kv;
  #else
    uint sb = (row * (COLS / 256u) + (b >> 3)) * 2u;
    precise float v = iq4xs_scale(uvec2(ws[sb], ws[sb + 1u]), b & 7u) * kv;
  #endif
    return v;
#elif WFMT_K23
    // engine/kquant23.py's layout; `precise`: the roundings of gguf's numpy decoder
    const uint NBR = COLS / 32u;
    uint b = col >> 5, i = col & 31u, u = i >> 4, f = (i & 15u) >> 2, k = i & 3u;
    uint rb = row * WROW_WORDS, S = row * (COLS / 256u) + (b >> 3);
    uint q = (wq[rb + b * 2u + u] >> (8u * k + 2u * f)) & 3u;
  #if WFMT == FMT_Q2_K
    uint sw = wq[rb + NBR * 2u + (b >> 3) * 4u + ((b & 7u) >> 1)];
    vec4 s = q2k_scales(sw, 16u * (b & 1u), unpackHalf2x16(ws[S]));
    precise float v = (u == 0u ? s.x : s.z) * float(q) - (u == 0u ? s.y : s.w);
  #else
    q |= ((wq[rb + NBR * 2u + b] >> (8u * k + 4u * u + f)) & 1u) << 2;
    uint h0 = (7u * S) >> 1;
    uvec4 hd = q3k_head(ws[h0], ws[h0 + 1u], ws[h0 + 2u], ws[h0 + 3u], (S & 1u) != 0u);
    precise float v = q3k_scale(hd, 2u * (b & 7u) + u) * (float(q) - 4.0);
  #endif
    return v;
#elif WFMT >= FMT_Q5_0
    // engine/kquant.py's layout; `precise`: one rounding per product, as gguf's numpy decoder
    const uint NBR = COLS / 32u;
    uint b = col >> 5, j = col & 31u, wi = (j & 15u) >> 2, k = j & 3u, hi = j >= 16u ? 4u : 0u;
    uint rb = row * WROW_WORDS;
    uint q = (wq[rb + b * 4u + wi] >> (8u * k + hi)) & 15u;
  #if WFMT == FMT_Q6_K
    q |= ((wq[rb + NBR * 4u + b * 2u + (wi >> 1)] >> (8u * k + hi + 2u * (wi & 1u))) & 3u) << 4;
  #elif WFMT != FMT_Q4_K
    q |= ((wq[rb + NBR * 4u + b] >> (8u * k + hi + wi)) & 1u) << 4;
  #endif
  #if WFMT == FMT_Q5_0
    uint f = row * NBR + b;
    precise float v = unpackHalf2x16((f & 1u) == 0u ? ws[f >> 1] : ws[f >> 1] >> 16).x * (float(q) - 16.0);
  #elif WFMT == FMT_Q5_1
    vec2 dm = unpackHalf2x16(ws[row * NBR + b]);
    precise float v = dm.x * float(q) + dm.y;
  #elif WFMT == FMT_Q6_K
    uint sb = row * (COLS / 256u) + (b >> 3), i16 = (b & 7u) * 2u + (j >> 4);
    uint sw = wq[rb + NBR * 6u + (b >> 3) * 4u + (i16 >> 2)];
    float sc = float(int(sw << (24u - 8u * (i16 & 3u))) >> 24);
    precise float dsc = unpackHalf2x16((sb & 1u) == 0u ? ws[sb >> 1] : ws[sb >> 1] >> 16).x * sc;
    precise float v = dsc * (float(q) - 32.0);
  #else
    uint sb = (row * (COLS / 256u) + (b >> 3)) * 4u;
    vec2 dm = k_scale_min(uvec4(ws[sb], ws[sb + 1u], ws[sb + 2u], ws[sb + 3u]), b & 3u, (b >> 2) & 1u);
    precise float v = dm.x * float(q) + dm.y;
  #endif
    return v;
#else
    uint b = col >> 5, j = col & 31u;
    vec2 dm = block_scale(row * (COLS / 32u) + b);
  #if WFMT == FMT_Q8_0
    uint w = wq[row * WROW_WORDS + b * 8u + (j >> 2)];
    int q = int(w << (24u - 8u * (j & 3u))) >> 24;           // sign-extend byte j&3
    return dm.x * float(q);
  #else
    uint jj = j & 15u;
    uint w = wq[row * WROW_WORDS + b * 4u + (jj >> 2)];
    uint q = (w >> (8u * (jj & 3u) + (j >= 16u ? 4u : 0u))) & 15u;
    #if WFMT == FMT_Q4_0
    return dm.x * (float(q) - 8.0);
    #else
    return dm.x * float(q) + dm.y;
    #endif
  #endif
#endif
}
#endif  // WEIGHTS_NO_SCALAR

// Vector decoders: one uint32 quant word -> 4 weights as a vec4, without shifting each field down.
// q4 (q4_0, q4_1): byte k of word w holds weight 4w+k (low nibble) and 16+4w+k (high nibble) of the
// block. Masking in place gives q * 2^(8k) (low) and q * 2^(8k+4) (high) as exact floats; the
// activations they multiply are pre-scaled by the inverse powers of two (Q4_LO_SCALE, Q4_HI_SCALE),
// which is exact unless |x| < ~1e-29 (subnormal). One AND + one convert per weight.
const uvec4 Q4_LO_MASK = uvec4(0xFu, 0xF00u, 0xF0000u, 0xF000000u);
const uvec4 Q4_HI_MASK = uvec4(0xF0u, 0xF000u, 0xF00000u, 0xF0000000u);
const vec4 Q4_LO_SCALE = vec4(1.0, 1.0 / 256.0, 1.0 / 65536.0, 1.0 / 16777216.0);
const vec4 Q4_HI_SCALE = vec4(1.0 / 16.0, 1.0 / 4096.0, 1.0 / 1048576.0, 1.0 / 268435456.0);
vec4 q4_lo(uint w) { return vec4(uvec4(w) & Q4_LO_MASK); }
vec4 q4_hi(uint w) { return vec4(uvec4(w) & Q4_HI_MASK); }
// q8_0: signed byte k moved to the top byte: the float is q * 2^24 exactly (fold 2^-24 into d).
const float Q8_TOP_SCALE = 1.0 / 16777216.0;
vec4 q8_top(uint w) {
    return vec4(ivec4(uvec4(w << 24, (w << 16) & 0xFF000000u, (w << 8) & 0xFF000000u, w & 0xFF000000u)));
}

// 5- and 6-bit quants (engine/kquant.py): the high bits of the 8 weights of quant word `w` (word wi
// of its block) OR'd next to their nibbles, so one mask per lane gives q * 2^(8k) for both the low
// and the high nibbles (the activations are pre-scaled by Q4_LO_SCALE for all 8 vec4s).
//   q5: h = the block's high-bit word (weight 4wi+k's bit at 8k+wi, 16+4wi+k's at 8k+4+wi).
//   q6: h = word wi/2 of the block's pair (2-bit fields at 8k+2(wi%2) and 8k+4+2(wi%2)).
const uvec4 Q5_MASK = uvec4(0x1Fu, 0x1F00u, 0x1F0000u, 0x1F000000u);
const uvec4 Q6_MASK = uvec4(0x3Fu, 0x3F00u, 0x3F0000u, 0x3F000000u);
vec4 q5_lo(uint w, uint h, uint wi) { return vec4(uvec4((w & 0x0F0F0F0Fu) | ((h << (4u - wi)) & 0x10101010u)) & Q5_MASK); }
vec4 q5_hi(uint w, uint h, uint wi) { return vec4(uvec4(((w >> 4) & 0x0F0F0F0Fu) | ((h >> wi) & 0x10101010u)) & Q5_MASK); }
vec4 q6_lo(uint w, uint h, uint wi) { return vec4(uvec4((w & 0x0F0F0F0Fu) | ((h << (4u - 2u * (wi & 1u))) & 0x30303030u)) & Q6_MASK); }
vec4 q6_hi(uint w, uint h, uint wi) { return vec4(uvec4(((w >> 4) & 0x0F0F0F0Fu) | ((h >> (2u * (wi & 1u))) & 0x30303030u)) & Q6_MASK); }

// Q6_K: int8 scale `i` (0..15) of a super-block's 16, held in one uvec4.
float q6_scale(uvec4 s, uint i) { return float(int(pick4(s, i >> 2) << (24u - 8u * (i & 3u))) >> 24); }
