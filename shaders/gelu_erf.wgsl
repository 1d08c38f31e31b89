// gelu_erf: y = 0.5 x (1 + erf(x / sqrt(2))) = 0.5 x erfc(-x / sqrt(2))   ref: reference.gelu_erf   grid: (gx, gy, 1), gx * gy * WG_SIZE >= n, i = (wid.y * gx + wid.x) * WG_SIZE + lid
// WGSL has no erf: erfc below is reference.erfc's Numerical Recipes fit term for term. For x < 0,
// y = x * erfc(|x| / sqrt 2) / 2 is computed without 1 + erf's cancellation, to ~1e-7 relative wherever
// it is an f32 (|x| < 13.2); for x >= 0, y = x (1 - erfc(x / sqrt 2) / 2).
override WG_SIZE: u32 = 256u;

struct Params { n: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;       // (n,)
@group(0) @binding(2) var<storage, read_write> y: array<f32>; // (n,)

// erfc(a / sqrt 2) / 2 for a = |x|, from a itself (a / sqrt 2 would round): erfc(t) = u e^(p(u) - t^2),
// u = 1 / (1 + t / 2), relative error < 1.2e-7 for every t >= 0. The output's relative error is the
// absolute error of the exponent (up to 87 where the output is still normal), so (a^2 / 2 - p) log2(e)
// is never rounded as a whole: ah keeps 8 significant bits, so H1 ah^2 is exact and the rest is small,
// and the two are added as integers of 2^-23 (f32 sums could be reassociated, and lavapipe's compiler
// does), whose fraction goes to exp2 (its error then small) and integer part to ldexp, as in
// gelu_tanh.wgsl. Past a = 15, the result is below 2^-150: 0.
const ERFC_H1: f32 = 0.72265625; // H = log2(e) / 2 = H1 + H2, H1 of 8 significant bits
const ERFC_H2: f32 = -0.0013087295228615403;
fn half_erfc(abs_x: f32) -> f32 {
    let a = min(abs_x, 15.0);
    let u = 1.0 / (1.0 + 0.35355339059327373 * a);
    let p = -1.26551223 + u * (1.00002368 + u * (0.37409196 + u * (0.09678418 + u * (-0.18628806
        + u * (0.27886807 + u * (-1.13520398 + u * (1.48851587 + u * (-0.82215223 + u * 0.17087277))))))));
    let ah = bitcast<f32>(bitcast<u32>(a) & 0xFFFF0000u);
    let rest = ERFC_H2 * ah * ah + (ERFC_H1 + ERFC_H2) * (a - ah) * (a + ah) - 1.4426950408889634 * p;
    let t = i32(round(ERFC_H1 * ah * ah * 8388608.0)) + i32(round(rest * 8388608.0));
    return ldexp(0.5 * u * exp2(-f32(t & 0x7FFFFF) / 8388608.0), -(t >> 23u));
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * WG_SIZE + lid.x;
    if (i < params.n) {
        let v = x[i];
        let h = half_erfc(abs(v));
        y[i] = v * select(1.0 - h, h, v < 0.0);
    }
}
