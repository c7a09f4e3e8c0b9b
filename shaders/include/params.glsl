// Per-step values that change between replays of a recorded program (kp fixes push and spec
// constants at record time). The host writes them into a small uint buffer that is uploaded at the
// start of each replay; layout mirrored by engine/params.py (STEP_FIELDS). Floats travel as bits.
#define P_POS       0u   // tokens already in the KV cache before this chunk (position of its first token)
#define P_NTOK      1u   // valid tokens in this chunk (<= the chunk size the program was recorded for)
#define P_SEED      2u   // seed of the counter-based RNG for this step (dropout masks)
#define P_DROP_ON   3u   // 1: apply the dropout mask in embedding gather (HARP reframing), else 0
#define P_DROP_P    4u   // dropout probability, float bits
#define STEP_WORDS  8u
