// add: y = a + b   ref: reference.add   grid: (ceil(n / WG_SIZE), 1, 1)
override WG_SIZE: u32 = 256u;

struct Params { n: u32 }

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>; // (n,)
@group(0) @binding(2) var<storage, read> b: array<f32>; // (n,)
@group(0) @binding(3) var<storage, read_write> y: array<f32>; // (n,)

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i < params.n) {
        y[i] = a[i] + b[i];
    }
}
