// embedding_bf16: y[t] = dequant(table[ids[t]]) * scale, table BF16 (w = f32 with the low 16 bits zero)   ref: reference.embedding   grid: (ceil(dim / 4 / WG_SIZE), n, 1), once per row chunk
// Composed by scripts/compose_shaders.py from shaders/compose/ops/embedding.wgsl and types/bf16.wgsl: edit those.
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
@group(0) @binding(1) var<storage, read> w: array<vec2<u32>>; // (rows, ceil(dim / 32) * 8) bf16, four in two words; rows zero-padded to whole 32-element units
@group(0) @binding(2) var<storage, read> ids: array<u32>;           // (n,)
@group(0) @binding(3) var<storage, read_write> y: array<vec4<f32>>; // (n, dim / 4)

// Elements 4 * i4 .. 4 * i4 + 3 of chunk row `row`, dequantised. A row is dim elements (dim % 4 == 0)
// stored as ceil(dim / 32) whole units, zeros after the dim-th (the repacking pads it: weights.py).
fn weight4(row: u32, i4: u32) -> vec4<f32> {
    let p = w[row * ((params.dim + 31u) / 32u * 8u) + i4];
    return bitcast<vec4<f32>>(vec4<u32>(p.x << 16u, p.x & 0xFFFF0000u, p.y << 16u, p.y & 0xFFFF0000u));
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let i4 = wid.x * WG_SIZE + li;
    let t = wid.y;
    let row = ids[t] - params.row_offset; // wraps to a huge value for ids below the chunk
    if (i4 < params.dim / 4u && row < params.rows) {
        y[t * (params.dim / 4u) + i4] = weight4(row, i4) * params.scale;
    }
}
