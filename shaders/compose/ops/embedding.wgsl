// embedding_{{type}}: y[t] = dequant(table[ids[t]]) * scale, table {{desc}}   ref: reference.embedding   grid: (ceil(dim / 4 / WG_SIZE), n, 1), once per row chunk
// The table is one row chunk (py/wgllm/gpu/weights.py documents the repacked arrays): ids outside
// [row_offset, row_offset + rows) are left to the dispatch of their own chunk.
override WG_SIZE: u32 = 64u;

struct Params {
    dim: u32,
    row_offset: u32, // first table row in this chunk
    rows: u32,       // table rows in this chunk
    scale: f32,      // sqrt(n_embd) for Gemma, else 1
}

@group(0) @binding(0) var<uniform> params: Params;
{{bindings}}
@group(0) @binding({{ids}}) var<storage, read> ids: array<u32>;           // (n,)
@group(0) @binding({{y}}) var<storage, read_write> y: array<vec4<f32>>; // (n, dim / 4)
{{dequant}}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i4 = wid.x * WG_SIZE + li;
    let t = wid.y;
    let row = ids[t] - params.row_offset; // wraps to a huge value for ids below the chunk
    if (i4 < params.dim / 4u && row < params.rows) {
        y[t * (params.dim / 4u) + i4] = weight4(row, i4) * params.scale;
    }
}
