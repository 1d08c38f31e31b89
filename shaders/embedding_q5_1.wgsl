// embedding_q5_1: y[t] = dequant(table[ids[t]]) * scale, table Q5_1 (w = d * q + m, q = nibble | qh bit << 4)   ref: reference.embedding   grid: (ceil(dim / 4 / WG_SIZE), n, 1), once per row chunk
// Composed by scripts/compose_shaders.py from shaders/compose/ops/embedding.wgsl and types/q5_1.wgsl: edit those.
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
@group(0) @binding(1) var<storage, read> qs: array<vec4<u32>>; // (rows * dim / 32) blocks of low nibbles, as Q4_0
@group(0) @binding(2) var<storage, read> qh: array<u32>;        // (rows * dim / 32) fifth bits: bit j = element j of the block
@group(0) @binding(3) var<storage, read> dm: array<u32>;        // (rows * dim / 32) f16 pairs (d, m), one block a word
@group(0) @binding(4) var<storage, read> ids: array<u32>;           // (n,)
@group(0) @binding(5) var<storage, read_write> y: array<vec4<f32>>; // (n, dim / 4)

// Four Q5_1 values: w's nibbles at `shift` with the fifth bits h bits 0..3.
fn q5(w: u32, shift: u32, h: u32) -> vec4<f32> {
    let high = ((vec4<u32>(h) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u)) << vec4<u32>(4u);
    return vec4<f32>(((vec4<u32>(w >> shift) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xFu)) | high);
}

// Elements 4 * i4 .. 4 * i4 + 3 of chunk row `row`, dequantised.
fn weight4(row: u32, i4: u32) -> vec4<f32> {
    let b = row * (params.dim / 32u) + i4 / 8u;
    let j = i4 % 8u; // elements 4j .. 4j + 3 of the block: the low (j < 4) or high nibbles of word j % 4
    let s = unpack2x16float(dm[b]);
    return s.x * q5(qs[b][j % 4u], 4u * (j / 4u), qh[b] >> (4u * j)) + s.y;
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
