// Counter-based RNG shared by every shader that needs randomness (dropout masks, sampling).
// Philox-2x32-10 (Salmon et al., SC'11, "Parallel random numbers: as easy as 1, 2, 3"): counter
// (position, dim), key seed; 32-bit integer arithmetic only (umulExtended is core GLSL 4.0, no
// int64 feature). Random123's known-answer vectors hold (tests/test_rng.py). The numpy twin is
// engine/rng.py and agrees bit for bit: the uniform has exactly 24 bits, k * 2^-24, which every
// float32 represents exactly.
// A pure function of its three words: the same (seed, position, dim) gives the same number in any
// shader, any dispatch order and any chunking of the sequence.
#ifndef VKHARP_RNG_GLSL
#define VKHARP_RNG_GLSL

#define PHILOX_M2x32 0xD256D193u
#define PHILOX_W32   0x9E3779B9u

uvec2 philox2x32_10(uvec2 ctr, uint key) {
    for (int r = 0; r < 10; ++r) {
        uint hi, lo;
        umulExtended(PHILOX_M2x32, ctr.x, hi, lo);
        ctr = uvec2(hi ^ key ^ ctr.y, lo);
        key += PHILOX_W32;
    }
    return ctr;
}

// Uniform in [0, 1) with 24-bit resolution: the top 24 bits of the first output word.
float rng_uniform(uint seed, uint position, uint dim) {
    return float(philox2x32_10(uvec2(position, dim), seed).x >> 8) * (1.0 / 16777216.0);
}

#endif
