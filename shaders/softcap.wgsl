// softcap: y = cap * tanh(x / cap)   ref: reference.softcap   grid: (gx, gy, 1), gx * gy * WG_SIZE >= n, i = (wid.y * gx + wid.x) * WG_SIZE + lid
override WG_SIZE: u32 = 256u;

struct Params {
    n: u32,
    cap: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;       // (n,)
@group(0) @binding(2) var<storage, read_write> y: array<f32>; // (n,)

// tanh to f32 accuracy everywhere: WGSL promises only the accuracy of sinh / cosh, and drivers that
// build tanh as (e^2z - 1) / (e^2z + 1) lose ~1e-4 relative near 0 (lavapipe does). Taylor series
// below 0.4 (first omitted term < 4e-9 relative), 1 - 2 / (e^2|z| + 1) above (+-1 once e^2|z| = inf).
fn tanh_accurate(z: f32) -> f32 {
    let a = abs(z);
    if (a < 0.4) {
        let z2 = z * z;
        let p = -1.0 / 3.0 + z2 * (2.0 / 15.0 + z2 * (-17.0 / 315.0 + z2 * (62.0 / 2835.0 + z2 * (-1382.0 / 155925.0 + z2 * (21844.0 / 6081075.0)))));
        return z + z * z2 * p;
    }
    return sign(z) * (1.0 - 2.0 / (exp(2.0 * a) + 1.0));
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * WG_SIZE + lid.x;
    if (i < params.n) {
        y[i] = params.cap * tanh_accurate(x[i] / params.cap);
    }
}
