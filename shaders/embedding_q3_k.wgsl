// embedding_q3_k: y[t] = dequant(table[ids[t]]) * scale, table Q3_K (w = (d * sc) * (q - 4 * !hbit) per 16-element sub-block, sc signed)   ref: reference.embedding   grid: (ceil(dim / 4 / WG_SIZE), n, 1), once per row chunk
// Composed by scripts/compose_shaders.py from shaders/compose/ops/embedding.wgsl and types/q3_k.wgsl: edit those.
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
@group(0) @binding(1) var<storage, read> hm: array<vec4<u32>>; // (rows * dim / 256, 2) high bits: elem 128h+32j+l in bit 4h+j of byte l
@group(0) @binding(2) var<storage, read> qs: array<vec4<u32>>; // (rows * dim / 256, 4) two-bit quants: elem 128h+32j+l in bits 2j.. of byte 32h+l
@group(0) @binding(3) var<storage, read> sc3: array<u32>;       // (rows * dim / 256, 4) signed sub-block scales (6-bit scale - 32), a byte each
@group(0) @binding(4) var<storage, read> d: array<u32>;         // (rows * dim / 256) f16 block scales, two a word
@group(0) @binding(5) var<storage, read> ids: array<u32>;           // (n,)
@group(0) @binding(6) var<storage, read_write> y: array<vec4<f32>>; // (n, dim / 4)

fn f16_at(words: u32, i: u32) -> f32 {
    return unpack2x16float(words)[i & 1u];
}

// Four Q3_K values: bits `shift`.. of q's bytes with bit `hbit` of h's bytes as the third, minus 4.
fn q3(q: u32, shift: u32, h: u32, hbit: u32) -> vec4<f32> {
    let lo = (vec4<u32>(q >> shift) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(3u);
    let hi = (vec4<u32>(h >> hbit) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(1u);
    return vec4<f32>(lo | (hi << vec4<u32>(2u))) - 4.0;
}

// Elements 4 * i4 .. 4 * i4 + 3 of chunk row `row`, dequantised.
fn weight4(row: u32, i4: u32) -> vec4<f32> {
    let b = row * (params.dim / 256u) + i4 / 64u;
    let e = (i4 % 64u) * 4u; // first of the four elements in the block
    let h = e / 128u;
    let j = (e % 128u) / 32u;
    let l = e % 32u;
    let qw = 8u * h + l / 4u; // word of qs byte 32h + l within the block
    let hw = l / 4u;          // word of hm byte l
    let s = f32(extractBits(bitcast<i32>(sc3[b * 4u + e / 64u]), 8u * ((e / 16u) % 4u), 8u));
    return (f16_at(d[b / 2u], b) * s) * q3(qs[b * 4u + qw / 4u][qw % 4u], 2u * j, hm[b * 2u + hw / 4u][hw % 4u], 4u * h + j);
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
