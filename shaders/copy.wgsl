// copy: y = x   ref: numpy copy (the bandwidth baseline of wgllm.bench)   grid: (groups_x, groups_y, 1) with groups_x * groups_y * WG_SIZE >= n4
override WG_SIZE: u32 = 256u;

struct Params { n4: u32 } // vec4s to copy

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<u32>>;       // (n4,)
@group(0) @binding(2) var<storage, read_write> y: array<vec4<u32>>; // (n4,)

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i = (wid.y * nwg.x + wid.x) * WG_SIZE + li;
    if (i < params.n4) {
        y[i] = x[i];
    }
}
