// Decoding the GPU weight layout (engine/quant.py documents it). Before including, define
//   WFMT: 0 f32, 1 f16, 2 q8_0, 3 q4_0, 4 q4_1
// and declare `uint wq[]` (quants, one row = WROW_WORDS words) and, for q formats, `uint ws[]` (scales).
// COLS must be a constant in scope. Block b of row r has flat index r * (COLS/32) + b.
// Kernels that load whole 16-byte words themselves (matvec, matmul) define WEIGHTS_NO_SCALAR first:
// they get the layout macros and the vector decoders at the end, not block_scale / weight_at.
#define FMT_F32  0
#define FMT_F16  1
#define FMT_Q8_0 2
#define FMT_Q4_0 3
#define FMT_Q4_1 4

#if WFMT == FMT_F32
  #define WROW_WORDS (COLS)
#elif WFMT == FMT_F16
  #define WROW_WORDS ((COLS + 1u) / 2u)
#elif WFMT == FMT_Q8_0
  #define WROW_WORDS ((COLS / 32u) * 8u)
#else
  #define WROW_WORDS ((COLS / 32u) * 4u)
#endif

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
