// The activations of shaders/activation.comp, shared with the GLU epilogue of the matrix products
// (shaders/include/matmul_core.glsl), so that a fused act(gate)*up rounds exactly as the separate
// dispatch does. activation(kind, x): kind 0 silu, 1 gelu (tanh form), 2 gelu (erf); a constant kind
// (a define or a specialization constant) folds the branch away. Formulas and their overflow rules:
// shaders/activation.comp.
// x * sigmoid(z), with sigmoid(z) = 1 / (1 + exp(-z)); 0 where z < -80 (|true value| < |x| * 2e-35).
float x_sigmoid(float x, float z) {
    return z < -80.0 ? 0.0 : x / (1.0 + exp(-z));
}

// erfc(z) for z >= 0 (Numerical Recipes 2nd ed., 6.2, erfcc).
float erfc_pos(float z) {
    float t = 1.0 / (1.0 + 0.5 * z);
    float p = -0.82215223 + t * 0.17087277;
    p = 1.48851587 + t * p;
    p = -1.13520398 + t * p;
    p = 0.27886807 + t * p;
    p = -0.18628806 + t * p;
    p = 0.09678418 + t * p;
    p = 0.37409196 + t * p;
    p = 1.00002368 + t * p;
    return t * exp(-z * z - 1.26551223 + t * p);
}

float activation(uint kind, float x) {
    if (kind == 0u)
        return x_sigmoid(x, x);
    if (kind == 1u)   // 2u = x (2 sqrt(2/pi) + 2 sqrt(2/pi) 0.044715 x^2)
        return x_sigmoid(x, x * (1.5957691216057308 + 0.07135481627260025 * x * x));
    float half_tail = 0.5 * erfc_pos(abs(x) * 0.7071067811865476);   // Phi(-|x|)
    return x * (x >= 0.0 ? 1.0 - half_tail : half_tail);
}
