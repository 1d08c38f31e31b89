// gelu_erf: y = 0.5 x (1 + erf(x / sqrt(2)))   ref: reference.gelu_erf   grid: (gx, gy, 1), gx * gy * WG_SIZE >= n, i = (wid.y * gx + wid.x) * WG_SIZE + lid
// WGSL has no erf: erf below is reference.erf's Abramowitz & Stegun 7.1.26 term for term.
override WG_SIZE: u32 = 256u;

struct Params { n: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;       // (n,)
@group(0) @binding(2) var<storage, read_write> y: array<f32>; // (n,)

fn erf(v: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.3275911 * abs(v));
    let poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))));
    return sign(v) * (1.0 - poly * exp(-v * v));
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * WG_SIZE + lid.x;
    if (i < params.n) {
        let v = x[i];
        y[i] = 0.5 * v * (1.0 + erf(v / 1.4142135623730951));
    }
}
