// silu: y = x / (1 + exp(-x))   ref: reference.silu   grid: (gx, gy, 1), gx * gy * WG_SIZE >= n, i = (wid.y * gx + wid.x) * WG_SIZE + lid
override WG_SIZE: u32 = 256u;

struct Params { n: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;       // (n,)
@group(0) @binding(2) var<storage, read_write> y: array<f32>; // (n,)

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let i = (wid.y * nwg.x + wid.x) * WG_SIZE + lid.x;
    if (i < params.n) {
        let v = x[i];
        y[i] = v / (1.0 + exp(-v));
    }
}
