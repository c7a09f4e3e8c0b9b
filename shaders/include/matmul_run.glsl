// Included by matmul_core.glsl (twice: the preloading and the streaming loop nests): one run of one
// row, `run` of `row`, added into ACC(t) for the TN tokens from the activations XR, XS, XQ (see
// matmul_xload.glsl). The caller defines row, i, run and the four macros.
                        uint fb0 = (pc.wrow + weight_row(row)) * NB + run * RUN;   // flat index of the run's first block
    #if WFMT == FMT_Q4_K || WFMT == FMT_Q5_K || WFMT == FMT_IQ4_XS
                        SVEC sc = WS(fb0 / 8u);
    #elif WFMT == FMT_Q6_K
                        SVEC sc = WS(fb0 / 16u);
    #elif WFMT == FMT_Q2_K
                        SVEC sc = WS(fb0 / 8u);
    #elif WFMT == FMT_Q3_K
                        uint S = fb0 / 8u, h0 = (7u * S) >> 1;   // super-block S: bytes 14S .. 14S + 13
                        uvec4 sc = q3k_head(WS(h0), WS(h0 + 1u), WS(h0 + 2u), WS(h0 + 3u), (S & 1u) != 0u);
    #elif WFMT >= 2
      #if RUN == 1 && WFMT != FMT_Q4_1 && WFMT != FMT_Q5_1
                        SVEC sc = WS(fb0 >> 1);
      #else
                        SVEC sc = WS(fb0 / RUN);
      #endif
    #else
                        SVEC sc = 0u;
    #endif
    #if WFMT_HIGH
                        // rows with a high-bit tail: WROW_WORDS per row, low nibbles first (weights.glsl)
                        uint rb4 = (pc.wrow + weight_row(row)) * (WROW_WORDS / 4u);
                        uvec4 hq = uvec4(0u);
      #if WFMT == FMT_Q6_K
                        uvec4 s6 = WQ4(rb4 + NB + NB / 2u + (run * RUN) / 8u);   // the int8 scales
      #endif
    #endif
    #if WFMT_K23
                        // 2-bit words first (2 per block), then q2_k's scale bytes or q3_k's high-bit words
                        uint rb4 = (pc.wrow + weight_row(row)) * (WROW_WORDS / 4u);
                        uvec4 lq = uvec4(0u);
      #if WFMT == FMT_Q2_K
                        uvec4 s2 = WQ4(rb4 + NB / 2u + (run * RUN) / 8u);   // the super-block's 16 scale bytes
      #else
                        uvec4 hq = uvec4(0u);
      #endif
    #endif
                        for (uint b = 0; b < RUN; b++) {
                            uint q0 = (fb0 + b) * U4;
                            vec2 dm = run_scale(sc, b, fb0);
                            vec4 w0, w1, w2, w3, w4, w5, w6, w7;   // the block's 32 weights, x order
    #if WFMT == FMT_F32
                            w0 = uintBitsToFloat(WQ4(q0));      w1 = uintBitsToFloat(WQ4(q0 + 1u));
                            w2 = uintBitsToFloat(WQ4(q0 + 2u)); w3 = uintBitsToFloat(WQ4(q0 + 3u));
                            w4 = uintBitsToFloat(WQ4(q0 + 4u)); w5 = uintBitsToFloat(WQ4(q0 + 5u));
                            w6 = uintBitsToFloat(WQ4(q0 + 6u)); w7 = uintBitsToFloat(WQ4(q0 + 7u));
    #elif WFMT == FMT_F16
                            uvec4 h0 = WQ4(q0), h1 = WQ4(q0 + 1u), h2 = WQ4(q0 + 2u), h3 = WQ4(q0 + 3u);
                            w0 = vec4(unpackHalf2x16(h0.x), unpackHalf2x16(h0.y));
                            w1 = vec4(unpackHalf2x16(h0.z), unpackHalf2x16(h0.w));
                            w2 = vec4(unpackHalf2x16(h1.x), unpackHalf2x16(h1.y));
                            w3 = vec4(unpackHalf2x16(h1.z), unpackHalf2x16(h1.w));
                            w4 = vec4(unpackHalf2x16(h2.x), unpackHalf2x16(h2.y));
                            w5 = vec4(unpackHalf2x16(h2.z), unpackHalf2x16(h2.w));
                            w6 = vec4(unpackHalf2x16(h3.x), unpackHalf2x16(h3.y));
                            w7 = vec4(unpackHalf2x16(h3.z), unpackHalf2x16(h3.w));
    #elif WFMT == FMT_Q8_0
                            uvec4 a = WQ4(q0), e = WQ4(q0 + 1u);
                            w0 = q8_top(a.x); w1 = q8_top(a.y); w2 = q8_top(a.z); w3 = q8_top(a.w);
                            w4 = q8_top(e.x); w5 = q8_top(e.y); w6 = q8_top(e.z); w7 = q8_top(e.w);
                            dm.x *= Q8_TOP_SCALE;
    #elif WFMT == FMT_Q6_K
                            uint blk = run * RUN + b;
                            uvec4 a = WQ4(rb4 + blk);
                            if ((b & 1u) == 0u) hq = WQ4(rb4 + NB + (blk >> 1));   // 2 blocks' high bits (runs are aligned)
                            bool odd = RUN >= 2 ? (b & 1u) == 1u : (blk & 1u) == 1u;
                            uint h0 = odd ? hq.z : hq.x, h1 = odd ? hq.w : hq.y;
                            w0 = q6_lo(a.x, h0, 0u); w1 = q6_lo(a.y, h0, 1u); w2 = q6_lo(a.z, h1, 2u); w3 = q6_lo(a.w, h1, 3u);
                            w4 = q6_hi(a.x, h0, 0u); w5 = q6_hi(a.y, h0, 1u); w6 = q6_hi(a.z, h1, 2u); w7 = q6_hi(a.w, h1, 3u);
                            // int8 scales 2j, 2j+1 of sub-block j = blk & 7: word j/2, bytes 2(j&1) and 2(j&1)+1
                            uint sw = RUN >= 8 ? s6[b >> 1] : pick4(s6, (blk & 7u) >> 1);
                            uint sh = odd ? 16u : 0u;
                            float da = dm.x * float(int(sw << (24u - sh)) >> 24);
                            float db = dm.x * float(int(sw << (16u - sh)) >> 24);
    #elif WFMT_HIGH
                            uint blk = run * RUN + b;
                            uvec4 a = WQ4(rb4 + blk);
                            if ((b & 3u) == 0u) hq = WQ4(rb4 + NB + (blk >> 2));   // 4 blocks' high-bit words
                            uint h = RUN >= 4 ? hq[b & 3u] : pick4(hq, blk & 3u);
                            w0 = q5_lo(a.x, h, 0u); w1 = q5_lo(a.y, h, 1u); w2 = q5_lo(a.z, h, 2u); w3 = q5_lo(a.w, h, 3u);
                            w4 = q5_hi(a.x, h, 0u); w5 = q5_hi(a.y, h, 1u); w6 = q5_hi(a.z, h, 2u); w7 = q5_hi(a.w, h, 3u);
    #elif WFMT_K23
                            uint blk = run * RUN + b, bs = RUN >= 8 ? b : (blk & 7u);
                            if ((b & 1u) == 0u) lq = WQ4(rb4 + (blk >> 1));   // 2 blocks' 2-bit words (runs are aligned)
                            bool odd = RUN >= 2 ? (b & 1u) == 1u : (blk & 1u) == 1u;
                            uint l0 = odd ? lq.z : lq.x, l1 = odd ? lq.w : lq.y;
      #if WFMT == FMT_Q2_K
                            w0 = q2_v(l0, 0u); w1 = q2_v(l0, 1u); w2 = q2_v(l0, 2u); w3 = q2_v(l0, 3u);
                            w4 = q2_v(l1, 0u); w5 = q2_v(l1, 1u); w6 = q2_v(l1, 2u); w7 = q2_v(l1, 3u);
                            // scale bytes 2bs, 2bs+1: word bs/2, bytes 2(bs&1) and 2(bs&1)+1
                            uint sw = RUN >= 8 ? s2[b >> 1] : pick4(s2, bs >> 1);
                            vec4 s4 = q2k_scales(sw, odd ? 16u : 0u, dm);   // (d*sc, dmin*m) of both sub-blocks
      #else
                            if ((b & 3u) == 0u) hq = WQ4(rb4 + NB / 2u + (blk >> 2));   // 4 blocks' high-bit words
                            uint h = RUN >= 4 ? hq[b & 3u] : pick4(hq, blk & 3u);
                            w0 = q3_v(l0, h, 0u, 0u); w1 = q3_v(l0, h, 1u, 1u); w2 = q3_v(l0, h, 2u, 2u); w3 = q3_v(l0, h, 3u, 3u);
                            w4 = q3_v(l1, h, 0u, 4u); w5 = q3_v(l1, h, 1u, 5u); w6 = q3_v(l1, h, 2u, 6u); w7 = q3_v(l1, h, 3u, 7u);
                            float da = q3k_scale(sc, 2u * bs), db = q3k_scale(sc, 2u * bs + 1u);
      #endif
    #elif WFMT_IQ4
                            uvec4 a = WQ4(q0);   // the int8 KVALUES of the codes, as floats (exact)
                            w0 = iq4_lo(a.x); w1 = iq4_lo(a.y); w2 = iq4_lo(a.z); w3 = iq4_lo(a.w);
                            w4 = iq4_hi(a.x); w5 = iq4_hi(a.y); w6 = iq4_hi(a.z); w7 = iq4_hi(a.w);
    #else
                            uvec4 a = WQ4(q0);
                            w0 = q4_lo(a.x); w1 = q4_lo(a.y); w2 = q4_lo(a.z); w3 = q4_lo(a.w);
                            w4 = q4_hi(a.x); w5 = q4_hi(a.y); w6 = q4_hi(a.z); w7 = q4_hi(a.w);
    #endif
                            for (uint t = 0; t < TN; t++) {
    #if WFMT == FMT_Q6_K || WFMT_K23
                                // two 16-weight sub-blocks, each (d*sc) * (q - 32) (q6_k), (d*sc)*q - dmin*m
                                // (q2_k) or (d*(s-32)) * (q - 4) (q3_k)
                                vec4 pa = w0 * XR(t, i, b)[0];
                                pa = fma(w1, XR(t, i, b)[1], pa);
                                pa = fma(w2, XR(t, i, b)[2], pa);
                                pa = fma(w3, XR(t, i, b)[3], pa);
                                vec4 pb = w4 * XR(t, i, b)[4];
                                pb = fma(w5, XR(t, i, b)[5], pb);
                                pb = fma(w6, XR(t, i, b)[6], pb);
                                pb = fma(w7, XR(t, i, b)[7], pb);
                                float sa = (pa.x + pa.y) + (pa.z + pa.w), sb = (pb.x + pb.y) + (pb.z + pb.w);
      #if WFMT == FMT_Q6_K
                                ACC(t) = fma(da, sa - 32.0 * XQ(t, i, b), fma(db, sb - 32.0 * XS(t, i, b), ACC(t)));
      #elif WFMT == FMT_Q3_K
                                ACC(t) = fma(da, sa - 4.0 * XQ(t, i, b), fma(db, sb - 4.0 * XS(t, i, b), ACC(t)));
      #else
                                ACC(t) = fma(s4.x, sa, fma(s4.z, sb, fma(-s4.y, XQ(t, i, b), fma(-s4.w, XS(t, i, b), ACC(t)))));
      #endif
    #else
                                vec4 p = w0 * XR(t, i, b)[0];
                                p = fma(w1, XR(t, i, b)[1], p);
                                p = fma(w2, XR(t, i, b)[2], p);
                                p = fma(w3, XR(t, i, b)[3], p);
                                p = fma(w4, XR(t, i, b)[4], p);
                                p = fma(w5, XR(t, i, b)[5], p);
                                p = fma(w6, XR(t, i, b)[6], p);
                                p = fma(w7, XR(t, i, b)[7], p);
                                float s = (p.x + p.y) + (p.z + p.w);
      #if WFMT == FMT_Q4_0
                                ACC(t) = fma(dm.x, s - 8.0 * XS(t, i, b), ACC(t));
      #elif WFMT == FMT_Q5_0
                                ACC(t) = fma(dm.x, s - 16.0 * XS(t, i, b), ACC(t));
      #elif WFMT == FMT_Q4_1 || WFMT == FMT_Q5_1 || WFMT == FMT_Q4_K || WFMT == FMT_Q5_K
                                ACC(t) = fma(dm.x, s, fma(dm.y, XS(t, i, b), ACC(t)));
      #elif WFMT == FMT_Q8_0 || WFMT_IQ4
                                ACC(t) = fma(dm.x, s, ACC(t));
      #else
                                ACC(t) += s;
      #endif
    #endif
                            }
                        }
