// embedding_q2_k: y[t] = dequant(table[ids[t]]) * scale, table Q2_K (w = (d * sc) * q - dmin * m per 16-element sub-block)   ref: reference.embedding   grid: (ceil(dim / 4 / WG_SIZE), n, 1), once per row chunk
// Composed by scripts/compose_shaders.py from shaders/compose/ops/embedding.wgsl and types/q2_k.wgsl: edit those.
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
@group(0) @binding(1) var<storage, read> qs: array<vec4<u32>>; // (rows * dim / 256, 4) two-bit quants: elem 128h+32j+l in bits 2j.. of byte 32h+l
@group(0) @binding(2) var<storage, read> sc: array<u32>;        // (rows * dim / 256, 4) sub-block scale (low nibble) and min (high), a byte each
@group(0) @binding(3) var<storage, read> dm: array<u32>;        // (rows * dim / 256) f16 pairs (d, dmin), one block a word
@group(0) @binding(4) var<storage, read> ids: array<u32>;           // (n,)
@group(0) @binding(5) var<storage, read_write> y: array<vec4<f32>>; // (n, dim / 4)

// Four Q2_K values: bits `shift`.. of q's bytes.
fn q2(q: u32, shift: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(q >> shift) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(3u));
}

// Elements 4 * i4 .. 4 * i4 + 3 of chunk row `row`, dequantised.
fn weight4(row: u32, i4: u32) -> vec4<f32> {
    let b = row * (params.dim / 256u) + i4 / 64u;
    let e = (i4 % 64u) * 4u; // first of the four elements in the block
    let h = e / 128u;
    let j = (e % 128u) / 32u;
    let qw = 8u * h + (e % 32u) / 4u; // word of qs byte 32h + l within the block
    let scale = extractBits(sc[b * 4u + e / 64u], 8u * ((e / 16u) % 4u), 8u);
    let s = unpack2x16float(dm[b]);
    return (s.x * f32(scale & 0xFu)) * q2(qs[b * 4u + qw / 4u][qw % 4u], 2u * j) - s.y * f32(scale >> 4u);
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
