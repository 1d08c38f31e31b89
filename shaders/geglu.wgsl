// geglu: y = gelu_tanh(gate) * up   ref: reference.geglu   grid: (gx, gy, 1), gx * gy * WG_SIZE >= n, i = (wid.y * gx + wid.x) * WG_SIZE + lid
override WG_SIZE: u32 = 256u;

struct Params { n: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> gate: array<f32>;    // (n,)
@group(0) @binding(2) var<storage, read> up: array<f32>;      // (n,)
@group(0) @binding(3) var<storage, read_write> y: array<f32>; // (n,)

fn gelu_tanh(v: f32) -> f32 {
    // tanh is +-1 in f32 beyond |z| = 9.02; the clamp keeps drivers that build tanh from exp
    // (inf / inf) away from NaN.
    let z = clamp(0.7978845608028654 * (v + 0.044715 * v * v * v), -10.0, 10.0);
    return 0.5 * v * (1.0 + tanh(z));
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * WG_SIZE + lid.x;
    if (i < params.n) {
        y[i] = gelu_tanh(gate[i]) * up[i];
    }
}
