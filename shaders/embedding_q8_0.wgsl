// embedding_q8_0: y[t] = dequant(table[ids[t]]) * scale, table Q8_0 (w = d * q)   ref: reference.embedding   grid: (ceil(dim / 4 / WG_SIZE), n, 1), once per row chunk
// Composed by scripts/compose_shaders.py from shaders/compose/ops/embedding.wgsl and types/q8_0.wgsl: edit those.
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
@group(0) @binding(1) var<storage, read> qs: array<vec4<u32>>; // (rows, dim / 16) int8 quants, four a word
@group(0) @binding(2) var<storage, read> d: array<u32>;        // (rows * dim / 32) f16 block scales, two a word
@group(0) @binding(3) var<storage, read> ids: array<u32>;           // (n,)
@group(0) @binding(4) var<storage, read_write> y: array<vec4<f32>>; // (n, dim / 4)

fn f16_at(words: u32, i: u32) -> f32 {
    return unpack2x16float(words)[i & 1u];
}

fn i8x4(w: u32) -> vec4<f32> {
    return vec4<f32>(vec4<i32>(vec4<u32>(w) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u)); // sign-extended bytes
}

// Elements 4 * i4 .. 4 * i4 + 3 of chunk row `row`, dequantised.
fn weight4(row: u32, i4: u32) -> vec4<f32> {
    let b = row * (params.dim / 32u) + i4 / 8u;
    return f16_at(d[b / 2u], b) * i8x4(qs[b * 2u + (i4 % 8u) / 4u][i4 % 4u]);
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
