// sin and cos of a rotary angle, accurate where GLSL's are not: Vulkan bounds sin/cos only on
// [-pi, pi] (absolute error 2^-11) and rotary angles reach ~1e5. Cody-Waite reduction by pi/2 in four
// parts of which the first three have 8 significant bits (k*part exact for k < 2^16, i.e. angles below
// ~1e5), then Cephes sinf / cosf polynomials on [-pi/4, pi/4]: |error| <= 1.5e-7 measured for positions
// up to 131072. Used by shaders/rope.comp and attention.comp's fused-RoPE variants.
#ifndef SINCOS_GLSL
#define SINCOS_GLSL
// pi/2 = PIO2_1 + PIO2_2 + PIO2_3 + PIO2_4 to ~2^-55; the first three have 8 significant bits.
const float PIO2_1 = 1.5703125;
const float PIO2_2 = 4.84466552734375e-4;
const float PIO2_3 = -6.4074993133544921875e-7;
const float PIO2_4 = 9.92093629470503e-10;

// (sin a, cos a) for a >= 0. `precise` forbids contraction and reassociation of the reduction.
vec2 sin_cos(float a) {
    precise float kq = roundEven(a * 0.636619772367581343);
    precise float r = a - kq * PIO2_1;
    r = r - kq * PIO2_2;
    r = r - kq * PIO2_3;
    r = r - kq * PIO2_4;
    float z = r * r;
    float s = ((-1.9515295891e-4 * z + 8.3321608736e-3) * z - 1.6666654611e-1) * z * r + r;
    float c = ((2.443315711809948e-5 * z - 1.388731625493765e-3) * z + 4.166664568298827e-2) * z * z
              - 0.5 * z + 1.0;
    uint quadrant = uint(kq) & 3u;
    vec2 sc = (quadrant & 1u) == 0u ? vec2(s, c) : vec2(c, -s);
    return (quadrant & 2u) == 0u ? sc : -sc;
}
#endif
