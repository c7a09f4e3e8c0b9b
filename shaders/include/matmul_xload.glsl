// Included by matmul_core.glsl (twice: the preloading and the streaming loop nests): activations of
// token t for the RUN blocks of `run` into XR(t, i, b)[k] (x, scaled for the nibbles' lanes), XS(t, i, b)
// (the block's sum) and XQ(t, i, b) (q6_k, q2_k, q3_k: its first half's sum). The caller defines t,
// i, run and the three macros.
            bool ok = n0 + t < NTOK && (ALL_RUNS || run < NRUN);
            for (uint b = 0; b < RUN; b++) {
                float s = 0.0;
                for (uint k = 0; k < 8; k++) {
                    vec4 v = ok ? X4(((n0 + t) * COLS + (run * RUN + b) * 32u) / 4u + k) : vec4(0.0);
#if NORM
                    if (ok) v = (v * ninv[t]) * NW4((pc.noff + (run * RUN + b) * 32u) / 4u + k);   // as rmsnorm rounds it
#endif
                    s += (v.x + v.y) + (v.z + v.w);
#if WFMT == FMT_Q6_K || WFMT_K23
                    if (k == 3u) { XQ(t, i, b) = s; s = 0.0; }
#endif
#if WFMT == FMT_Q4_0 || WFMT == FMT_Q4_1 || WFMT == FMT_Q4_K
                    v *= k < 4u ? Q4_LO_SCALE : Q4_HI_SCALE;
#elif WFMT_HIGH || WFMT_K23
                    v *= Q4_LO_SCALE;   // q5/q6 words decode both nibbles at 8k (q5_lo/q5_hi, ...), q2/q3 fields too
#endif
                    XR(t, i, b)[k] = v;
                }
                XS(t, i, b) = s;
            }
