#version 450
// @variant embed_f32        WFMT=0 DROPOUT=0
// @variant embed_f16        WFMT=1 DROPOUT=0
// @variant embed_q8_0       WFMT=2 DROPOUT=0
// @variant embed_q4_0       WFMT=3 DROPOUT=0
// @variant embed_q4_1       WFMT=4 DROPOUT=0
// @variant embed_f32_drop   WFMT=0 DROPOUT=1
// @variant embed_f16_drop   WFMT=1 DROPOUT=1
// @variant embed_q8_0_drop  WFMT=2 DROPOUT=1
// @variant embed_q4_0_drop  WFMT=3 DROPOUT=1
// @variant embed_q4_1_drop  WFMT=4 DROPOUT=1
// @variant embed_q5_0       WFMT=5 DROPOUT=0
// @variant embed_q5_0_drop  WFMT=5 DROPOUT=1
// @variant embed_q5_1       WFMT=6 DROPOUT=0
// @variant embed_q5_1_drop  WFMT=6 DROPOUT=1
// @variant embed_q4_k       WFMT=7 DROPOUT=0
// @variant embed_q4_k_drop  WFMT=7 DROPOUT=1
// @variant embed_q5_k       WFMT=8 DROPOUT=0
// @variant embed_q5_k_drop  WFMT=8 DROPOUT=1
// @variant embed_q6_k       WFMT=9 DROPOUT=0
// @variant embed_q6_k_drop  WFMT=9 DROPOUT=1
// @variant embed_iq4_nl       WFMT=10 DROPOUT=0
// @variant embed_iq4_nl_drop  WFMT=10 DROPOUT=1
// @variant embed_iq4_xs       WFMT=11 DROPOUT=0
// @variant embed_iq4_xs_drop  WFMT=11 DROPOUT=1
// @variant embed_q2_k       WFMT=12 DROPOUT=0
// @variant embed_q2_k_drop  WFMT=12 DROPOUT=1
// @variant embed_q3_k       WFMT=13 DROPOUT=0
// @variant embed_q3_k_drop  WFMT=13 DROPOUT=1
// Embedding gather for one row part [ROW0, ROW0 + PROWS) of a table [vocab, COLS]:
//   o[t, d] = table[ids[t], d] * SCALE     for t < NTOK whose id falls in this part's rows,
//   o[t, d] = 0                            if LAST != 0 and ids[t] >= ROW0 + PROWS (= vocab: no
//                                          out-of-bounds read), other tokens untouched (other parts).
// DROPOUT variants (HARP reframing), when step[P_DROP_ON] == 1:
//   o[t, d] = 0 if rng_uniform(step[P_SEED], step[P_POS] + t, d) < float(step[P_DROP_P])
//   with no 1/(1-p) rescale, as HARP's reference. The plain variants do not bind the step buffer.
//   DUAL = 1 (HARP cached mode, two streams of one token): every row at position P_POS, row 0 kept.
// Bindings: 0 o f32[NTOK, COLS] (w), 1 ids u32[NTOK] (r), 2 wq u32 quants of the part (r),
//   [3 ws u32 scales of the part (r), q formats], [next: step u32[STEP_WORDS] (r), DROPOUT].
// Constants: WG, COLS, NTOK, ROW0, PROWS, LAST, SCALE, DUAL.
// Grid: NTOK * ceil(COLS / WG) groups (spilling into y); group g handles token g / ceil(COLS / WG).
// Twin: reference.embed (with engine.rng for the mask).
#extension GL_GOOGLE_include_directive : require
#include "common.glsl"
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint COLS = 32;
layout(constant_id = 2) const uint NTOK = 1;
layout(constant_id = 3) const uint ROW0 = 0;
layout(constant_id = 4) const uint PROWS = 1;
layout(constant_id = 5) const uint LAST = 1;
layout(constant_id = 6) const float SCALE = 1.0;
layout(constant_id = 7) const uint DUAL = 0;   // 1: HARP's two streams at position P_POS; only row 1 is reframed
layout(local_size_x_id = 0) in;
layout(binding = 0) writeonly buffer Out { float o[]; };
layout(binding = 1) readonly buffer Ids { uint ids[]; };
layout(binding = 2) readonly buffer WQ { uint wq[]; };
#if WFMT >= 2
layout(binding = 3) readonly buffer WS { uint ws[]; };
  #define STEP_BINDING 4
#else
  #define STEP_BINDING 3
#endif
#if DROPOUT
#include "params.glsl"
#include "rng.glsl"
layout(binding = STEP_BINDING) readonly buffer Step { uint step[]; };
#endif
#include "weights.glsl"

void main() {
    const uint groups_per_token = (COLS + WG - 1u) / WG;
    uint g = flat_group_id();
    uint t = g / groups_per_token;
    uint d = (g - t * groups_per_token) * WG + gl_LocalInvocationID.x;
    if (t >= NTOK || d >= COLS) return;
    uint id = ids[t];
    float v;
    if (id >= ROW0 && id - ROW0 < PROWS) {
        precise float scaled = weight_at(id - ROW0, d) * SCALE;  // one rounding, as the twin (no reassociation)
        v = scaled;
    } else if (LAST != 0u && id >= ROW0 + PROWS) {
        v = 0.0;
    } else {
        return;  // another part's token
    }
#if DROPOUT
    uint tp = DUAL != 0u ? 0u : t;
    if (step[P_DROP_ON] == 1u && (DUAL == 0u || t >= 1u)
        && rng_uniform(step[P_SEED], step[P_POS] + tp, d) < uintBitsToFloat(step[P_DROP_P]))
        v = 0.0;
#endif
    o[t * COLS + d] = v;
}
