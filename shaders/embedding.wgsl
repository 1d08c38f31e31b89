// embedding: y[t] = table[ids[t]] * scale   ref: reference.embedding   grid: (ceil(dim / WG_SIZE), n, 1)
// A plain f32 table, gathered whole: the engines' GPT-2 position table (ids = the positions); the
// token tables go through embedding_<type>.wgsl (composed, in row chunks).
override WG_SIZE: u32 = 256u;

struct Params {
    dim: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> table: array<f32>;   // (rows, dim)
@group(0) @binding(2) var<storage, read> ids: array<u32>;     // (n,)
@group(0) @binding(3) var<storage, read_write> y: array<f32>; // (n, dim)

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.x * WG_SIZE + lid.x;
    let t = wid.y;
    if (c >= params.dim) {
        return;
    }
    y[t * params.dim + c] = table[ids[t] * params.dim + c] * params.scale;
}
