// geglu: y = gelu_tanh(gate) * up   ref: reference.geglu   grid: (gx, gy, 1), gx * gy * WG_SIZE >= n, i = (wid.y * gx + wid.x) * WG_SIZE + lid
override WG_SIZE: u32 = 256u;

struct Params { n: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> gate: array<f32>;    // (n,)
@group(0) @binding(2) var<storage, read> up: array<f32>;      // (n,)
@group(0) @binding(3) var<storage, read_write> y: array<f32>; // (n,)

// 0.5 (1 + tanh z) = 1 / (1 + e^-2z), from e = e^-2|z| <= 1: no cancellation in 1 + tanh z for v < 0
// (the output shrinks to 0 with GELU as e underflows) and no overflow. For v < 0 the output's relative
// error is the absolute error of 2|z| (up to 87 while the output is a normal f32), so 2|z| log2(e) =
// C a + K a^3 (a = |v|) is never rounded as a whole: ah keeps 8 significant bits (ah^3 exact) and qh
// ah^3's top 12, so C1 ah and K1 qh are exact and the rest (d = a - ah, C2, K2, ah^3 - qh) is small;
// the three parts are added as integers of 2^-23 (an f32 sum may be reassociated, and lavapipe's
// compiler does), whose fraction goes to exp2 (its error stays small) and integer part to ldexp.
// Past a = 11, e < 2^-150: 0.
const GELU_C1: f32 = 2.30218505859375;      // C = 2 sqrt(2/pi) log2(e) = C1 + C2, C1 of 16 significant bits
const GELU_C2: f32 = 2.3139549739426002e-5;
const GELU_K1: f32 = 0.102935791015625;     // K = 0.044715 C = K1 + K2, K1 of 12 significant bits
const GELU_K2: f32 = 7.4485642471699975e-6;
fn gelu_tanh(v: f32) -> f32 {
    let a = min(abs(v), 11.0);
    let ah = bitcast<f32>(bitcast<u32>(a) & 0xFFFF0000u);
    let d = a - ah;
    let q = ah * ah * ah;
    let qh = bitcast<f32>(bitcast<u32>(q) & 0xFFFFF000u);
    let rest = GELU_K1 * (q - qh) + GELU_K2 * q + GELU_C2 * ah
        + d * ((GELU_C1 + GELU_C2) + (GELU_K1 + GELU_K2) * (3.0 * ah * ah + 3.0 * ah * d + d * d));
    let t = i32(round(GELU_K1 * qh * 8388608.0)) + i32(round(GELU_C1 * ah * 8388608.0)) + i32(round(rest * 8388608.0));
    let e = ldexp(exp2(-f32(t & 0x7FFFFF) / 8388608.0), -(t >> 23u));
    return v * select(e, 1.0, v >= 0.0) / (1.0 + e);
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * WG_SIZE + lid.x;
    if (i < params.n) {
        y[i] = gelu_tanh(gate[i]) * up[i];
    }
}
