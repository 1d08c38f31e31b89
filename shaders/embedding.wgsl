// embedding: y[t] = table[ids[t]] * scale (+ pos_table[positions[t]] when has_pos)   ref: reference.embedding (scale and position add as in reference.forward)   grid: (ceil(dim / WG_SIZE), n, 1)
// f32 tables only (quantised tables: embedding_q*.wgsl). Without learned positions (has_pos = 0) bind
// ids and table again as positions and pos_table: they are never read then.
override WG_SIZE: u32 = 256u;

struct Params {
    dim: u32,
    has_pos: u32, // 1: add pos_table[positions[t]] (GPT-2)
    scale: f32,   // sqrt(n_embd) for Gemma, else 1
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> table: array<f32>;     // (vocab, dim)
@group(0) @binding(2) var<storage, read> ids: array<u32>;       // (n,)
@group(0) @binding(3) var<storage, read> positions: array<u32>; // (n,)
@group(0) @binding(4) var<storage, read> pos_table: array<f32>; // (n_pos, dim)
@group(0) @binding(5) var<storage, read_write> y: array<f32>;   // (n, dim)

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.x * WG_SIZE + lid.x;
    let t = wid.y;
    if (c >= params.dim) {
        return;
    }
    var v = table[ids[t] * params.dim + c] * params.scale;
    if (params.has_pos != 0u) {
        v += pos_table[positions[t] * params.dim + c];
    }
    y[t * params.dim + c] = v;
}
