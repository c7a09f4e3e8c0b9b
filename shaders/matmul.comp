#version 450
// @also _tx TEXEL=1 unless GENERIC
// @variant matmul_f32_r1           WFMT=0 RUN=1 BIAS=0
// @variant matmul_f32_any          WFMT=0 GENERIC=1 BIAS=0
// @variant matmul_f32_r1_bias      WFMT=0 RUN=1 BIAS=1
// @variant matmul_f32_any_bias     WFMT=0 GENERIC=1 BIAS=1
// @variant matmul_f16_r1           WFMT=1 RUN=1 BIAS=0
// @variant matmul_f16_any          WFMT=1 GENERIC=1 BIAS=0
// @variant matmul_f16_r1_bias      WFMT=1 RUN=1 BIAS=1
// @variant matmul_f16_any_bias     WFMT=1 GENERIC=1 BIAS=1
// @variant matmul_q8_0_r1          WFMT=2 RUN=1 BIAS=0
// @variant matmul_q8_0_r2          WFMT=2 RUN=2 BIAS=0
// @variant matmul_q8_0_r4          WFMT=2 RUN=4 BIAS=0
// @variant matmul_q8_0_r8          WFMT=2 RUN=8 BIAS=0
// @variant matmul_q8_0_r1_bias     WFMT=2 RUN=1 BIAS=1
// @variant matmul_q8_0_r2_bias     WFMT=2 RUN=2 BIAS=1
// @variant matmul_q8_0_r4_bias     WFMT=2 RUN=4 BIAS=1
// @variant matmul_q8_0_r8_bias     WFMT=2 RUN=8 BIAS=1
// @variant matmul_q4_0_r1          WFMT=3 RUN=1 BIAS=0
// @variant matmul_q4_0_r2          WFMT=3 RUN=2 BIAS=0
// @variant matmul_q4_0_r4          WFMT=3 RUN=4 BIAS=0
// @variant matmul_q4_0_r8          WFMT=3 RUN=8 BIAS=0
// @variant matmul_q4_0_r1_bias     WFMT=3 RUN=1 BIAS=1
// @variant matmul_q4_0_r2_bias     WFMT=3 RUN=2 BIAS=1
// @variant matmul_q4_0_r4_bias     WFMT=3 RUN=4 BIAS=1
// @variant matmul_q4_0_r8_bias     WFMT=3 RUN=8 BIAS=1
// @variant matmul_q4_1_r1          WFMT=4 RUN=1 BIAS=0
// @variant matmul_q4_1_r2          WFMT=4 RUN=2 BIAS=0
// @variant matmul_q4_1_r4          WFMT=4 RUN=4 BIAS=0
// @variant matmul_q4_1_r1_bias     WFMT=4 RUN=1 BIAS=1
// @variant matmul_q4_1_r2_bias     WFMT=4 RUN=2 BIAS=1
// @variant matmul_q4_1_r4_bias     WFMT=4 RUN=4 BIAS=1
// @variant matmul_f32_r1_sg         WFMT=0 RUN=1 BIAS=0 SGR=1
// @variant matmul_f32_r1_sg_bias    WFMT=0 RUN=1 BIAS=1 SGR=1
// @variant matmul_f16_r1_sg         WFMT=1 RUN=1 BIAS=0 SGR=1
// @variant matmul_f16_r1_sg_bias    WFMT=1 RUN=1 BIAS=1 SGR=1
// @variant matmul_q8_0_r1_sg        WFMT=2 RUN=1 BIAS=0 SGR=1
// @variant matmul_q8_0_r1_sg_bias   WFMT=2 RUN=1 BIAS=1 SGR=1
// @variant matmul_q8_0_r2_sg        WFMT=2 RUN=2 BIAS=0 SGR=1
// @variant matmul_q8_0_r2_sg_bias   WFMT=2 RUN=2 BIAS=1 SGR=1
// @variant matmul_q4_0_r1_sg        WFMT=3 RUN=1 BIAS=0 SGR=1
// @variant matmul_q4_0_r1_sg_bias   WFMT=3 RUN=1 BIAS=1 SGR=1
// @variant matmul_q4_0_r2_sg        WFMT=3 RUN=2 BIAS=0 SGR=1
// @variant matmul_q4_0_r2_sg_bias   WFMT=3 RUN=2 BIAS=1 SGR=1
// @variant matmul_q4_1_r1_sg        WFMT=4 RUN=1 BIAS=0 SGR=1
// @variant matmul_q4_1_r1_sg_bias   WFMT=4 RUN=1 BIAS=1 SGR=1
// @variant matmul_q4_1_r2_sg        WFMT=4 RUN=2 BIAS=0 SGR=1
// @variant matmul_q4_1_r2_sg_bias   WFMT=4 RUN=2 BIAS=1 SGR=1
// @variant matmul_f32_any_res          WFMT=0 GENERIC=1 BIAS=0 RES=1
// @variant matmul_f32_r1_res           WFMT=0 RUN=1 BIAS=0 RES=1
// @variant matmul_f32_r1_sg_res        WFMT=0 RUN=1 BIAS=0 SGR=1 RES=1
// @variant matmul_f16_any_res          WFMT=1 GENERIC=1 BIAS=0 RES=1
// @variant matmul_f16_r1_res           WFMT=1 RUN=1 BIAS=0 RES=1
// @variant matmul_f16_r1_sg_res        WFMT=1 RUN=1 BIAS=0 SGR=1 RES=1
// @variant matmul_q8_0_r1_res           WFMT=2 RUN=1 BIAS=0 RES=1
// @variant matmul_q8_0_r1_sg_res        WFMT=2 RUN=1 BIAS=0 SGR=1 RES=1
// @variant matmul_q8_0_r2_res           WFMT=2 RUN=2 BIAS=0 RES=1
// @variant matmul_q8_0_r2_sg_res        WFMT=2 RUN=2 BIAS=0 SGR=1 RES=1
// @variant matmul_q8_0_r4_res           WFMT=2 RUN=4 BIAS=0 RES=1
// @variant matmul_q8_0_r8_res           WFMT=2 RUN=8 BIAS=0 RES=1
// @variant matmul_q4_0_r1_res           WFMT=3 RUN=1 BIAS=0 RES=1
// @variant matmul_q4_0_r1_sg_res        WFMT=3 RUN=1 BIAS=0 SGR=1 RES=1
// @variant matmul_q4_0_r2_res           WFMT=3 RUN=2 BIAS=0 RES=1
// @variant matmul_q4_0_r2_sg_res        WFMT=3 RUN=2 BIAS=0 SGR=1 RES=1
// @variant matmul_q4_0_r4_res           WFMT=3 RUN=4 BIAS=0 RES=1
// @variant matmul_q4_0_r8_res           WFMT=3 RUN=8 BIAS=0 RES=1
// @variant matmul_q4_1_r1_res           WFMT=4 RUN=1 BIAS=0 RES=1
// @variant matmul_q4_1_r1_sg_res        WFMT=4 RUN=1 BIAS=0 SGR=1 RES=1
// @variant matmul_q4_1_r2_res           WFMT=4 RUN=2 BIAS=0 RES=1
// @variant matmul_q4_1_r2_sg_res        WFMT=4 RUN=2 BIAS=0 SGR=1 RES=1
// @variant matmul_q4_1_r4_res           WFMT=4 RUN=4 BIAS=0 RES=1
// @variant matmul_f32_r1_norm           WFMT=0 RUN=1 BIAS=0 NORM=1
// @variant matmul_f32_r1_bias_norm      WFMT=0 RUN=1 BIAS=1 NORM=1
// @variant matmul_f32_r1_sg_norm        WFMT=0 RUN=1 BIAS=0 SGR=1 NORM=1
// @variant matmul_f32_r1_sg_bias_norm   WFMT=0 RUN=1 BIAS=1 SGR=1 NORM=1
// @variant matmul_f16_r1_norm           WFMT=1 RUN=1 BIAS=0 NORM=1
// @variant matmul_f16_r1_bias_norm      WFMT=1 RUN=1 BIAS=1 NORM=1
// @variant matmul_f16_r1_sg_norm        WFMT=1 RUN=1 BIAS=0 SGR=1 NORM=1
// @variant matmul_f16_r1_sg_bias_norm   WFMT=1 RUN=1 BIAS=1 SGR=1 NORM=1
// @variant matmul_q8_0_r1_norm          WFMT=2 RUN=1 BIAS=0 NORM=1
// @variant matmul_q8_0_r1_bias_norm     WFMT=2 RUN=1 BIAS=1 NORM=1
// @variant matmul_q8_0_r1_sg_norm       WFMT=2 RUN=1 BIAS=0 SGR=1 NORM=1
// @variant matmul_q8_0_r1_sg_bias_norm  WFMT=2 RUN=1 BIAS=1 SGR=1 NORM=1
// @variant matmul_q8_0_r2_norm          WFMT=2 RUN=2 BIAS=0 NORM=1
// @variant matmul_q8_0_r2_bias_norm     WFMT=2 RUN=2 BIAS=1 NORM=1
// @variant matmul_q8_0_r2_sg_norm       WFMT=2 RUN=2 BIAS=0 SGR=1 NORM=1
// @variant matmul_q8_0_r2_sg_bias_norm  WFMT=2 RUN=2 BIAS=1 SGR=1 NORM=1
// @variant matmul_q8_0_r4_norm          WFMT=2 RUN=4 BIAS=0 NORM=1
// @variant matmul_q8_0_r4_bias_norm     WFMT=2 RUN=4 BIAS=1 NORM=1
// @variant matmul_q8_0_r8_norm          WFMT=2 RUN=8 BIAS=0 NORM=1
// @variant matmul_q8_0_r8_bias_norm     WFMT=2 RUN=8 BIAS=1 NORM=1
// @variant matmul_q4_0_r1_norm          WFMT=3 RUN=1 BIAS=0 NORM=1
// @variant matmul_q4_0_r1_bias_norm     WFMT=3 RUN=1 BIAS=1 NORM=1
// @variant matmul_q4_0_r1_sg_norm       WFMT=3 RUN=1 BIAS=0 SGR=1 NORM=1
// @variant matmul_q4_0_r1_sg_bias_norm  WFMT=3 RUN=1 BIAS=1 SGR=1 NORM=1
// @variant matmul_q4_0_r2_norm          WFMT=3 RUN=2 BIAS=0 NORM=1
// @variant matmul_q4_0_r2_bias_norm     WFMT=3 RUN=2 BIAS=1 NORM=1
// @variant matmul_q4_0_r2_sg_norm       WFMT=3 RUN=2 BIAS=0 SGR=1 NORM=1
// @variant matmul_q4_0_r2_sg_bias_norm  WFMT=3 RUN=2 BIAS=1 SGR=1 NORM=1
// @variant matmul_q4_0_r4_norm          WFMT=3 RUN=4 BIAS=0 NORM=1
// @variant matmul_q4_0_r4_bias_norm     WFMT=3 RUN=4 BIAS=1 NORM=1
// @variant matmul_q4_0_r8_norm          WFMT=3 RUN=8 BIAS=0 NORM=1
// @variant matmul_q4_0_r8_bias_norm     WFMT=3 RUN=8 BIAS=1 NORM=1
// @variant matmul_q4_1_r1_norm          WFMT=4 RUN=1 BIAS=0 NORM=1
// @variant matmul_q4_1_r1_bias_norm     WFMT=4 RUN=1 BIAS=1 NORM=1
// @variant matmul_q4_1_r1_sg_norm       WFMT=4 RUN=1 BIAS=0 SGR=1 NORM=1
// @variant matmul_q4_1_r1_sg_bias_norm  WFMT=4 RUN=1 BIAS=1 SGR=1 NORM=1
// @variant matmul_q4_1_r2_norm          WFMT=4 RUN=2 BIAS=0 NORM=1
// @variant matmul_q4_1_r2_bias_norm     WFMT=4 RUN=2 BIAS=1 NORM=1
// @variant matmul_q4_1_r2_sg_norm       WFMT=4 RUN=2 BIAS=0 SGR=1 NORM=1
// @variant matmul_q4_1_r2_sg_bias_norm  WFMT=4 RUN=2 BIAS=1 SGR=1 NORM=1
// @variant matmul_q4_1_r4_norm          WFMT=4 RUN=4 BIAS=0 NORM=1
// @variant matmul_q4_1_r4_bias_norm     WFMT=4 RUN=4 BIAS=1 NORM=1
// @variant matmul_q5_0_r1                       WFMT=5 RUN=1 BIAS=0
// @variant matmul_q5_0_r1_bias                  WFMT=5 RUN=1 BIAS=1
// @variant matmul_q5_0_r1_res                   WFMT=5 RUN=1 BIAS=0 RES=1
// @variant matmul_q5_0_r1_norm                  WFMT=5 RUN=1 BIAS=0 NORM=1
// @variant matmul_q5_0_r1_bias_norm             WFMT=5 RUN=1 BIAS=1 NORM=1
// @variant matmul_q5_0_r2                       WFMT=5 RUN=2 BIAS=0
// @variant matmul_q5_0_r2_bias                  WFMT=5 RUN=2 BIAS=1
// @variant matmul_q5_0_r2_res                   WFMT=5 RUN=2 BIAS=0 RES=1
// @variant matmul_q5_0_r2_norm                  WFMT=5 RUN=2 BIAS=0 NORM=1
// @variant matmul_q5_0_r2_bias_norm             WFMT=5 RUN=2 BIAS=1 NORM=1
// @variant matmul_q5_0_r4                       WFMT=5 RUN=4 BIAS=0
// @variant matmul_q5_0_r4_bias                  WFMT=5 RUN=4 BIAS=1
// @variant matmul_q5_0_r4_res                   WFMT=5 RUN=4 BIAS=0 RES=1
// @variant matmul_q5_0_r4_norm                  WFMT=5 RUN=4 BIAS=0 NORM=1
// @variant matmul_q5_0_r4_bias_norm             WFMT=5 RUN=4 BIAS=1 NORM=1
// @variant matmul_q5_0_r8                       WFMT=5 RUN=8 BIAS=0
// @variant matmul_q5_0_r8_bias                  WFMT=5 RUN=8 BIAS=1
// @variant matmul_q5_0_r8_res                   WFMT=5 RUN=8 BIAS=0 RES=1
// @variant matmul_q5_0_r8_norm                  WFMT=5 RUN=8 BIAS=0 NORM=1
// @variant matmul_q5_0_r8_bias_norm             WFMT=5 RUN=8 BIAS=1 NORM=1
// @variant matmul_q5_0_r1_sg                    WFMT=5 RUN=1 BIAS=0 SGR=1
// @variant matmul_q5_0_r1_sg_bias               WFMT=5 RUN=1 BIAS=1 SGR=1
// @variant matmul_q5_0_r1_sg_res                WFMT=5 RUN=1 BIAS=0 RES=1 SGR=1
// @variant matmul_q5_0_r1_sg_norm               WFMT=5 RUN=1 BIAS=0 NORM=1 SGR=1
// @variant matmul_q5_0_r1_sg_bias_norm          WFMT=5 RUN=1 BIAS=1 NORM=1 SGR=1
// @variant matmul_q5_0_r2_sg                    WFMT=5 RUN=2 BIAS=0 SGR=1
// @variant matmul_q5_0_r2_sg_bias               WFMT=5 RUN=2 BIAS=1 SGR=1
// @variant matmul_q5_0_r2_sg_res                WFMT=5 RUN=2 BIAS=0 RES=1 SGR=1
// @variant matmul_q5_0_r2_sg_norm               WFMT=5 RUN=2 BIAS=0 NORM=1 SGR=1
// @variant matmul_q5_0_r2_sg_bias_norm          WFMT=5 RUN=2 BIAS=1 NORM=1 SGR=1
// @variant matmul_q5_1_r1                       WFMT=6 RUN=1 BIAS=0
// @variant matmul_q5_1_r1_bias                  WFMT=6 RUN=1 BIAS=1
// @variant matmul_q5_1_r1_res                   WFMT=6 RUN=1 BIAS=0 RES=1
// @variant matmul_q5_1_r1_norm                  WFMT=6 RUN=1 BIAS=0 NORM=1
// @variant matmul_q5_1_r1_bias_norm             WFMT=6 RUN=1 BIAS=1 NORM=1
// @variant matmul_q5_1_r2                       WFMT=6 RUN=2 BIAS=0
// @variant matmul_q5_1_r2_bias                  WFMT=6 RUN=2 BIAS=1
// @variant matmul_q5_1_r2_res                   WFMT=6 RUN=2 BIAS=0 RES=1
// @variant matmul_q5_1_r2_norm                  WFMT=6 RUN=2 BIAS=0 NORM=1
// @variant matmul_q5_1_r2_bias_norm             WFMT=6 RUN=2 BIAS=1 NORM=1
// @variant matmul_q5_1_r4                       WFMT=6 RUN=4 BIAS=0
// @variant matmul_q5_1_r4_bias                  WFMT=6 RUN=4 BIAS=1
// @variant matmul_q5_1_r4_res                   WFMT=6 RUN=4 BIAS=0 RES=1
// @variant matmul_q5_1_r4_norm                  WFMT=6 RUN=4 BIAS=0 NORM=1
// @variant matmul_q5_1_r4_bias_norm             WFMT=6 RUN=4 BIAS=1 NORM=1
// @variant matmul_q5_1_r1_sg                    WFMT=6 RUN=1 BIAS=0 SGR=1
// @variant matmul_q5_1_r1_sg_bias               WFMT=6 RUN=1 BIAS=1 SGR=1
// @variant matmul_q5_1_r1_sg_res                WFMT=6 RUN=1 BIAS=0 RES=1 SGR=1
// @variant matmul_q5_1_r1_sg_norm               WFMT=6 RUN=1 BIAS=0 NORM=1 SGR=1
// @variant matmul_q5_1_r1_sg_bias_norm          WFMT=6 RUN=1 BIAS=1 NORM=1 SGR=1
// @variant matmul_q5_1_r2_sg                    WFMT=6 RUN=2 BIAS=0 SGR=1
// @variant matmul_q5_1_r2_sg_bias               WFMT=6 RUN=2 BIAS=1 SGR=1
// @variant matmul_q5_1_r2_sg_res                WFMT=6 RUN=2 BIAS=0 RES=1 SGR=1
// @variant matmul_q5_1_r2_sg_norm               WFMT=6 RUN=2 BIAS=0 NORM=1 SGR=1
// @variant matmul_q5_1_r2_sg_bias_norm          WFMT=6 RUN=2 BIAS=1 NORM=1 SGR=1
// @variant matmul_q4_k_r1                       WFMT=7 RUN=1 BIAS=0
// @variant matmul_q4_k_r1_bias                  WFMT=7 RUN=1 BIAS=1
// @variant matmul_q4_k_r1_res                   WFMT=7 RUN=1 BIAS=0 RES=1
// @variant matmul_q4_k_r1_norm                  WFMT=7 RUN=1 BIAS=0 NORM=1
// @variant matmul_q4_k_r1_bias_norm             WFMT=7 RUN=1 BIAS=1 NORM=1
// @variant matmul_q4_k_r2                       WFMT=7 RUN=2 BIAS=0
// @variant matmul_q4_k_r2_bias                  WFMT=7 RUN=2 BIAS=1
// @variant matmul_q4_k_r2_res                   WFMT=7 RUN=2 BIAS=0 RES=1
// @variant matmul_q4_k_r2_norm                  WFMT=7 RUN=2 BIAS=0 NORM=1
// @variant matmul_q4_k_r2_bias_norm             WFMT=7 RUN=2 BIAS=1 NORM=1
// @variant matmul_q4_k_r4                       WFMT=7 RUN=4 BIAS=0
// @variant matmul_q4_k_r4_bias                  WFMT=7 RUN=4 BIAS=1
// @variant matmul_q4_k_r4_res                   WFMT=7 RUN=4 BIAS=0 RES=1
// @variant matmul_q4_k_r4_norm                  WFMT=7 RUN=4 BIAS=0 NORM=1
// @variant matmul_q4_k_r4_bias_norm             WFMT=7 RUN=4 BIAS=1 NORM=1
// @variant matmul_q4_k_r8                       WFMT=7 RUN=8 BIAS=0
// @variant matmul_q4_k_r8_bias                  WFMT=7 RUN=8 BIAS=1
// @variant matmul_q4_k_r8_res                   WFMT=7 RUN=8 BIAS=0 RES=1
// @variant matmul_q4_k_r8_norm                  WFMT=7 RUN=8 BIAS=0 NORM=1
// @variant matmul_q4_k_r8_bias_norm             WFMT=7 RUN=8 BIAS=1 NORM=1
// @variant matmul_q4_k_r1_sg                    WFMT=7 RUN=1 BIAS=0 SGR=1
// @variant matmul_q4_k_r1_sg_bias               WFMT=7 RUN=1 BIAS=1 SGR=1
// @variant matmul_q4_k_r1_sg_res                WFMT=7 RUN=1 BIAS=0 RES=1 SGR=1
// @variant matmul_q4_k_r1_sg_norm               WFMT=7 RUN=1 BIAS=0 NORM=1 SGR=1
// @variant matmul_q4_k_r1_sg_bias_norm          WFMT=7 RUN=1 BIAS=1 NORM=1 SGR=1
// @variant matmul_q4_k_r2_sg                    WFMT=7 RUN=2 BIAS=0 SGR=1
// @variant matmul_q4_k_r2_sg_bias               WFMT=7 RUN=2 BIAS=1 SGR=1
// @variant matmul_q4_k_r2_sg_res                WFMT=7 RUN=2 BIAS=0 RES=1 SGR=1
// @variant matmul_q4_k_r2_sg_norm               WFMT=7 RUN=2 BIAS=0 NORM=1 SGR=1
// @variant matmul_q4_k_r2_sg_bias_norm          WFMT=7 RUN=2 BIAS=1 NORM=1 SGR=1
// @variant matmul_q5_k_r1                       WFMT=8 RUN=1 BIAS=0
// @variant matmul_q5_k_r1_bias                  WFMT=8 RUN=1 BIAS=1
// @variant matmul_q5_k_r1_res                   WFMT=8 RUN=1 BIAS=0 RES=1
// @variant matmul_q5_k_r1_norm                  WFMT=8 RUN=1 BIAS=0 NORM=1
// @variant matmul_q5_k_r1_bias_norm             WFMT=8 RUN=1 BIAS=1 NORM=1
// @variant matmul_q5_k_r2                       WFMT=8 RUN=2 BIAS=0
// @variant matmul_q5_k_r2_bias                  WFMT=8 RUN=2 BIAS=1
// @variant matmul_q5_k_r2_res                   WFMT=8 RUN=2 BIAS=0 RES=1
// @variant matmul_q5_k_r2_norm                  WFMT=8 RUN=2 BIAS=0 NORM=1
// @variant matmul_q5_k_r2_bias_norm             WFMT=8 RUN=2 BIAS=1 NORM=1
// @variant matmul_q5_k_r4                       WFMT=8 RUN=4 BIAS=0
// @variant matmul_q5_k_r4_bias                  WFMT=8 RUN=4 BIAS=1
// @variant matmul_q5_k_r4_res                   WFMT=8 RUN=4 BIAS=0 RES=1
// @variant matmul_q5_k_r4_norm                  WFMT=8 RUN=4 BIAS=0 NORM=1
// @variant matmul_q5_k_r4_bias_norm             WFMT=8 RUN=4 BIAS=1 NORM=1
// @variant matmul_q5_k_r8                       WFMT=8 RUN=8 BIAS=0
// @variant matmul_q5_k_r8_bias                  WFMT=8 RUN=8 BIAS=1
// @variant matmul_q5_k_r8_res                   WFMT=8 RUN=8 BIAS=0 RES=1
// @variant matmul_q5_k_r8_norm                  WFMT=8 RUN=8 BIAS=0 NORM=1
// @variant matmul_q5_k_r8_bias_norm             WFMT=8 RUN=8 BIAS=1 NORM=1
// @variant matmul_q5_k_r1_sg                    WFMT=8 RUN=1 BIAS=0 SGR=1
// @variant matmul_q5_k_r1_sg_bias               WFMT=8 RUN=1 BIAS=1 SGR=1
// @variant matmul_q5_k_r1_sg_res                WFMT=8 RUN=1 BIAS=0 RES=1 SGR=1
// @variant matmul_q5_k_r1_sg_norm               WFMT=8 RUN=1 BIAS=0 NORM=1 SGR=1
// @variant matmul_q5_k_r1_sg_bias_norm          WFMT=8 RUN=1 BIAS=1 NORM=1 SGR=1
// @variant matmul_q5_k_r2_sg                    WFMT=8 RUN=2 BIAS=0 SGR=1
// @variant matmul_q5_k_r2_sg_bias               WFMT=8 RUN=2 BIAS=1 SGR=1
// @variant matmul_q5_k_r2_sg_res                WFMT=8 RUN=2 BIAS=0 RES=1 SGR=1
// @variant matmul_q5_k_r2_sg_norm               WFMT=8 RUN=2 BIAS=0 NORM=1 SGR=1
// @variant matmul_q5_k_r2_sg_bias_norm          WFMT=8 RUN=2 BIAS=1 NORM=1 SGR=1
// @variant matmul_q6_k_r1                       WFMT=9 RUN=1 BIAS=0
// @variant matmul_q6_k_r1_bias                  WFMT=9 RUN=1 BIAS=1
// @variant matmul_q6_k_r1_res                   WFMT=9 RUN=1 BIAS=0 RES=1
// @variant matmul_q6_k_r1_norm                  WFMT=9 RUN=1 BIAS=0 NORM=1
// @variant matmul_q6_k_r1_bias_norm             WFMT=9 RUN=1 BIAS=1 NORM=1
// @variant matmul_q6_k_r2                       WFMT=9 RUN=2 BIAS=0
// @variant matmul_q6_k_r2_bias                  WFMT=9 RUN=2 BIAS=1
// @variant matmul_q6_k_r2_res                   WFMT=9 RUN=2 BIAS=0 RES=1
// @variant matmul_q6_k_r2_norm                  WFMT=9 RUN=2 BIAS=0 NORM=1
// @variant matmul_q6_k_r2_bias_norm             WFMT=9 RUN=2 BIAS=1 NORM=1
// @variant matmul_q6_k_r4                       WFMT=9 RUN=4 BIAS=0
// @variant matmul_q6_k_r4_bias                  WFMT=9 RUN=4 BIAS=1
// @variant matmul_q6_k_r4_res                   WFMT=9 RUN=4 BIAS=0 RES=1
// @variant matmul_q6_k_r4_norm                  WFMT=9 RUN=4 BIAS=0 NORM=1
// @variant matmul_q6_k_r4_bias_norm             WFMT=9 RUN=4 BIAS=1 NORM=1
// @variant matmul_q6_k_r8                       WFMT=9 RUN=8 BIAS=0
// @variant matmul_q6_k_r8_bias                  WFMT=9 RUN=8 BIAS=1
// @variant matmul_q6_k_r8_res                   WFMT=9 RUN=8 BIAS=0 RES=1
// @variant matmul_q6_k_r8_norm                  WFMT=9 RUN=8 BIAS=0 NORM=1
// @variant matmul_q6_k_r8_bias_norm             WFMT=9 RUN=8 BIAS=1 NORM=1
// @variant matmul_q6_k_r1_sg                    WFMT=9 RUN=1 BIAS=0 SGR=1
// @variant matmul_q6_k_r1_sg_bias               WFMT=9 RUN=1 BIAS=1 SGR=1
// @variant matmul_q6_k_r1_sg_res                WFMT=9 RUN=1 BIAS=0 RES=1 SGR=1
// @variant matmul_q6_k_r1_sg_norm               WFMT=9 RUN=1 BIAS=0 NORM=1 SGR=1
// @variant matmul_q6_k_r1_sg_bias_norm          WFMT=9 RUN=1 BIAS=1 NORM=1 SGR=1
// @variant matmul_q6_k_r2_sg                    WFMT=9 RUN=2 BIAS=0 SGR=1
// @variant matmul_q6_k_r2_sg_bias               WFMT=9 RUN=2 BIAS=1 SGR=1
// @variant matmul_q6_k_r2_sg_res                WFMT=9 RUN=2 BIAS=0 RES=1 SGR=1
// @variant matmul_q6_k_r2_sg_norm               WFMT=9 RUN=2 BIAS=0 NORM=1 SGR=1
// @variant matmul_q6_k_r2_sg_bias_norm          WFMT=9 RUN=2 BIAS=1 NORM=1 SGR=1
// @variant matmul_iq4_nl_r1                    WFMT=10 RUN=1 BIAS=0
// @variant matmul_iq4_nl_r1_bias               WFMT=10 RUN=1 BIAS=1
// @variant matmul_iq4_nl_r1_res                WFMT=10 RUN=1 BIAS=0 RES=1
// @variant matmul_iq4_nl_r1_norm               WFMT=10 RUN=1 BIAS=0 NORM=1
// @variant matmul_iq4_nl_r1_bias_norm          WFMT=10 RUN=1 BIAS=1 NORM=1
// @variant matmul_iq4_nl_r2                    WFMT=10 RUN=2 BIAS=0
// @variant matmul_iq4_nl_r2_bias               WFMT=10 RUN=2 BIAS=1
// @variant matmul_iq4_nl_r2_res                WFMT=10 RUN=2 BIAS=0 RES=1
// @variant matmul_iq4_nl_r2_norm               WFMT=10 RUN=2 BIAS=0 NORM=1
// @variant matmul_iq4_nl_r2_bias_norm          WFMT=10 RUN=2 BIAS=1 NORM=1
// @variant matmul_iq4_nl_r4                    WFMT=10 RUN=4 BIAS=0
// @variant matmul_iq4_nl_r4_bias               WFMT=10 RUN=4 BIAS=1
// @variant matmul_iq4_nl_r4_res                WFMT=10 RUN=4 BIAS=0 RES=1
// @variant matmul_iq4_nl_r4_norm               WFMT=10 RUN=4 BIAS=0 NORM=1
// @variant matmul_iq4_nl_r4_bias_norm          WFMT=10 RUN=4 BIAS=1 NORM=1
// @variant matmul_iq4_nl_r8                    WFMT=10 RUN=8 BIAS=0
// @variant matmul_iq4_nl_r8_bias               WFMT=10 RUN=8 BIAS=1
// @variant matmul_iq4_nl_r8_res                WFMT=10 RUN=8 BIAS=0 RES=1
// @variant matmul_iq4_nl_r8_norm               WFMT=10 RUN=8 BIAS=0 NORM=1
// @variant matmul_iq4_nl_r8_bias_norm          WFMT=10 RUN=8 BIAS=1 NORM=1
// @variant matmul_iq4_nl_r1_sg                 WFMT=10 RUN=1 BIAS=0 SGR=1
// @variant matmul_iq4_nl_r1_sg_bias            WFMT=10 RUN=1 BIAS=1 SGR=1
// @variant matmul_iq4_nl_r1_sg_res             WFMT=10 RUN=1 BIAS=0 RES=1 SGR=1
// @variant matmul_iq4_nl_r1_sg_norm            WFMT=10 RUN=1 BIAS=0 NORM=1 SGR=1
// @variant matmul_iq4_nl_r1_sg_bias_norm       WFMT=10 RUN=1 BIAS=1 NORM=1 SGR=1
// @variant matmul_iq4_nl_r2_sg                 WFMT=10 RUN=2 BIAS=0 SGR=1
// @variant matmul_iq4_nl_r2_sg_bias            WFMT=10 RUN=2 BIAS=1 SGR=1
// @variant matmul_iq4_nl_r2_sg_res             WFMT=10 RUN=2 BIAS=0 RES=1 SGR=1
// @variant matmul_iq4_nl_r2_sg_norm            WFMT=10 RUN=2 BIAS=0 NORM=1 SGR=1
// @variant matmul_iq4_nl_r2_sg_bias_norm       WFMT=10 RUN=2 BIAS=1 NORM=1 SGR=1
// @variant matmul_iq4_xs_r1                    WFMT=11 RUN=1 BIAS=0
// @variant matmul_iq4_xs_r1_bias               WFMT=11 RUN=1 BIAS=1
// @variant matmul_iq4_xs_r1_res                WFMT=11 RUN=1 BIAS=0 RES=1
// @variant matmul_iq4_xs_r1_norm               WFMT=11 RUN=1 BIAS=0 NORM=1
// @variant matmul_iq4_xs_r1_bias_norm          WFMT=11 RUN=1 BIAS=1 NORM=1
// @variant matmul_iq4_xs_r2                    WFMT=11 RUN=2 BIAS=0
// @variant matmul_iq4_xs_r2_bias               WFMT=11 RUN=2 BIAS=1
// @variant matmul_iq4_xs_r2_res                WFMT=11 RUN=2 BIAS=0 RES=1
// @variant matmul_iq4_xs_r2_norm               WFMT=11 RUN=2 BIAS=0 NORM=1
// @variant matmul_iq4_xs_r2_bias_norm          WFMT=11 RUN=2 BIAS=1 NORM=1
// @variant matmul_iq4_xs_r4                    WFMT=11 RUN=4 BIAS=0
// @variant matmul_iq4_xs_r4_bias               WFMT=11 RUN=4 BIAS=1
// @variant matmul_iq4_xs_r4_res                WFMT=11 RUN=4 BIAS=0 RES=1
// @variant matmul_iq4_xs_r4_norm               WFMT=11 RUN=4 BIAS=0 NORM=1
// @variant matmul_iq4_xs_r4_bias_norm          WFMT=11 RUN=4 BIAS=1 NORM=1
// @variant matmul_iq4_xs_r8                    WFMT=11 RUN=8 BIAS=0
// @variant matmul_iq4_xs_r8_bias               WFMT=11 RUN=8 BIAS=1
// @variant matmul_iq4_xs_r8_res                WFMT=11 RUN=8 BIAS=0 RES=1
// @variant matmul_iq4_xs_r8_norm               WFMT=11 RUN=8 BIAS=0 NORM=1
// @variant matmul_iq4_xs_r8_bias_norm          WFMT=11 RUN=8 BIAS=1 NORM=1
// @variant matmul_iq4_xs_r1_sg                 WFMT=11 RUN=1 BIAS=0 SGR=1
// @variant matmul_iq4_xs_r1_sg_bias            WFMT=11 RUN=1 BIAS=1 SGR=1
// @variant matmul_iq4_xs_r1_sg_res             WFMT=11 RUN=1 BIAS=0 RES=1 SGR=1
// @variant matmul_iq4_xs_r1_sg_norm            WFMT=11 RUN=1 BIAS=0 NORM=1 SGR=1
// @variant matmul_iq4_xs_r1_sg_bias_norm       WFMT=11 RUN=1 BIAS=1 NORM=1 SGR=1
// @variant matmul_iq4_xs_r2_sg                 WFMT=11 RUN=2 BIAS=0 SGR=1
// @variant matmul_iq4_xs_r2_sg_bias            WFMT=11 RUN=2 BIAS=1 SGR=1
// @variant matmul_iq4_xs_r2_sg_res             WFMT=11 RUN=2 BIAS=0 RES=1 SGR=1
// @variant matmul_iq4_xs_r2_sg_norm            WFMT=11 RUN=2 BIAS=0 NORM=1 SGR=1
// @variant matmul_iq4_xs_r2_sg_bias_norm       WFMT=11 RUN=2 BIAS=1 NORM=1 SGR=1
// @variant matmul_q2_k_r1                      WFMT=12 RUN=1 BIAS=0
// @variant matmul_q2_k_r1_bias                 WFMT=12 RUN=1 BIAS=1
// @variant matmul_q2_k_r1_res                  WFMT=12 RUN=1 BIAS=0 RES=1
// @variant matmul_q2_k_r1_norm                 WFMT=12 RUN=1 BIAS=0 NORM=1
// @variant matmul_q2_k_r1_bias_norm            WFMT=12 RUN=1 BIAS=1 NORM=1
// @variant matmul_q2_k_r2                      WFMT=12 RUN=2 BIAS=0
// @variant matmul_q2_k_r2_bias                 WFMT=12 RUN=2 BIAS=1
// @variant matmul_q2_k_r2_res                  WFMT=12 RUN=2 BIAS=0 RES=1
// @variant matmul_q2_k_r2_norm                 WFMT=12 RUN=2 BIAS=0 NORM=1
// @variant matmul_q2_k_r2_bias_norm            WFMT=12 RUN=2 BIAS=1 NORM=1
// @variant matmul_q2_k_r4                      WFMT=12 RUN=4 BIAS=0
// @variant matmul_q2_k_r4_bias                 WFMT=12 RUN=4 BIAS=1
// @variant matmul_q2_k_r4_res                  WFMT=12 RUN=4 BIAS=0 RES=1
// @variant matmul_q2_k_r4_norm                 WFMT=12 RUN=4 BIAS=0 NORM=1
// @variant matmul_q2_k_r4_bias_norm            WFMT=12 RUN=4 BIAS=1 NORM=1
// @variant matmul_q2_k_r8                      WFMT=12 RUN=8 BIAS=0
// @variant matmul_q2_k_r8_bias                 WFMT=12 RUN=8 BIAS=1
// @variant matmul_q2_k_r8_res                  WFMT=12 RUN=8 BIAS=0 RES=1
// @variant matmul_q2_k_r8_norm                 WFMT=12 RUN=8 BIAS=0 NORM=1
// @variant matmul_q2_k_r8_bias_norm            WFMT=12 RUN=8 BIAS=1 NORM=1
// @variant matmul_q2_k_r1_sg                   WFMT=12 RUN=1 BIAS=0 SGR=1
// @variant matmul_q2_k_r1_sg_bias              WFMT=12 RUN=1 BIAS=1 SGR=1
// @variant matmul_q2_k_r1_sg_res               WFMT=12 RUN=1 BIAS=0 RES=1 SGR=1
// @variant matmul_q2_k_r1_sg_norm              WFMT=12 RUN=1 BIAS=0 NORM=1 SGR=1
// @variant matmul_q2_k_r1_sg_bias_norm         WFMT=12 RUN=1 BIAS=1 NORM=1 SGR=1
// @variant matmul_q2_k_r2_sg                   WFMT=12 RUN=2 BIAS=0 SGR=1
// @variant matmul_q2_k_r2_sg_bias              WFMT=12 RUN=2 BIAS=1 SGR=1
// @variant matmul_q2_k_r2_sg_res               WFMT=12 RUN=2 BIAS=0 RES=1 SGR=1
// @variant matmul_q2_k_r2_sg_norm              WFMT=12 RUN=2 BIAS=0 NORM=1 SGR=1
// @variant matmul_q2_k_r2_sg_bias_norm         WFMT=12 RUN=2 BIAS=1 NORM=1 SGR=1
// @variant matmul_q3_k_r1                      WFMT=13 RUN=1 BIAS=0
// @variant matmul_q3_k_r1_bias                 WFMT=13 RUN=1 BIAS=1
// @variant matmul_q3_k_r1_res                  WFMT=13 RUN=1 BIAS=0 RES=1
// @variant matmul_q3_k_r1_norm                 WFMT=13 RUN=1 BIAS=0 NORM=1
// @variant matmul_q3_k_r1_bias_norm            WFMT=13 RUN=1 BIAS=1 NORM=1
// @variant matmul_q3_k_r2                      WFMT=13 RUN=2 BIAS=0
// @variant matmul_q3_k_r2_bias                 WFMT=13 RUN=2 BIAS=1
// @variant matmul_q3_k_r2_res                  WFMT=13 RUN=2 BIAS=0 RES=1
// @variant matmul_q3_k_r2_norm                 WFMT=13 RUN=2 BIAS=0 NORM=1
// @variant matmul_q3_k_r2_bias_norm            WFMT=13 RUN=2 BIAS=1 NORM=1
// @variant matmul_q3_k_r4                      WFMT=13 RUN=4 BIAS=0
// @variant matmul_q3_k_r4_bias                 WFMT=13 RUN=4 BIAS=1
// @variant matmul_q3_k_r4_res                  WFMT=13 RUN=4 BIAS=0 RES=1
// @variant matmul_q3_k_r4_norm                 WFMT=13 RUN=4 BIAS=0 NORM=1
// @variant matmul_q3_k_r4_bias_norm            WFMT=13 RUN=4 BIAS=1 NORM=1
// @variant matmul_q3_k_r8                      WFMT=13 RUN=8 BIAS=0
// @variant matmul_q3_k_r8_bias                 WFMT=13 RUN=8 BIAS=1
// @variant matmul_q3_k_r8_res                  WFMT=13 RUN=8 BIAS=0 RES=1
// @variant matmul_q3_k_r8_norm                 WFMT=13 RUN=8 BIAS=0 NORM=1
// @variant matmul_q3_k_r8_bias_norm            WFMT=13 RUN=8 BIAS=1 NORM=1
// @variant matmul_q3_k_r1_sg                   WFMT=13 RUN=1 BIAS=0 SGR=1
// @variant matmul_q3_k_r1_sg_bias              WFMT=13 RUN=1 BIAS=1 SGR=1
// @variant matmul_q3_k_r1_sg_res               WFMT=13 RUN=1 BIAS=0 RES=1 SGR=1
// @variant matmul_q3_k_r1_sg_norm              WFMT=13 RUN=1 BIAS=0 NORM=1 SGR=1
// @variant matmul_q3_k_r1_sg_bias_norm         WFMT=13 RUN=1 BIAS=1 NORM=1 SGR=1
// @variant matmul_q3_k_r2_sg                   WFMT=13 RUN=2 BIAS=0 SGR=1
// @variant matmul_q3_k_r2_sg_bias              WFMT=13 RUN=2 BIAS=1 SGR=1
// @variant matmul_q3_k_r2_sg_res               WFMT=13 RUN=2 BIAS=0 RES=1 SGR=1
// @variant matmul_q3_k_r2_sg_norm              WFMT=13 RUN=2 BIAS=0 NORM=1 SGR=1
// @variant matmul_q3_k_r2_sg_bias_norm         WFMT=13 RUN=2 BIAS=1 NORM=1 SGR=1
// Matrix x matrix (prefill): o[n, r] = sum_c x[n, c] * W[r, c] (+ bias[r]) for n < NTOK tokens, one
// weight part. Tiled over tokens: a work group keeps the activations of TN tokens in registers and
// reads each weight word once for all of them (once per tile of TN tokens, not once per token).
// Bindings: 0 o f32[NTOK, OUT_ROWS] (w), 1 wq quants of the part (r), [2 ws scales (r), q formats],
//   then x f32[NTOK, COLS] (r), [then bias f32[OUT_ROWS] (r), _bias variants].
// Variants: as matvec.comp. Constants, work layout and grid: shaders/include/matmul_core.glsl.
// Twin: reference.matmul.
#extension GL_GOOGLE_include_directive : require
#include "matmul_core.glsl"
