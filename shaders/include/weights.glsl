// Decoding the GPU weight layout (engine/quant.py documents it). Before including, define
//   WFMT: 0 f32, 1 f16, 2 q8_0, 3 q4_0, 4 q4_1
// and declare `uint wq[]` (quants, one row = WROW_WORDS words) and, for q formats, `uint ws[]` (scales).
// COLS must be a constant in scope. Block b of row r has flat index r * (COLS/32) + b.
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
