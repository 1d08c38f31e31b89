// embedding_q6_k: y[t] = dequant(table[ids[t]]) * scale, table Q6_K (w = (d * sc) * (q - 32) per 16-element sub-block)   ref: reference.embedding   grid: (ceil(dim / 4 / WG_SIZE), n, 1), once per row chunk
// Composed by scripts/compose_shaders.py from shaders/compose/ops/embedding.wgsl and types/q6_k.wgsl: edit those.
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
@group(0) @binding(1) var<storage, read> ql: array<vec4<u32>>; // (rows * dim / 256, 8) low nibbles: elem 128h+32i+l in byte 64h+32(i%2)+l, high nibble when i >= 2
@group(0) @binding(2) var<storage, read> qh: array<vec4<u32>>; // (rows * dim / 256, 4) high bit pairs: elem 128h+32i+l in bits 2i.. of byte 32h+l
@group(0) @binding(3) var<storage, read> sc: array<u32>;        // (rows * dim / 256, 4) signed sub-block scales, a byte each
@group(0) @binding(4) var<storage, read> d: array<u32>;         // (rows * dim / 256) f16 block scales, two a word
@group(0) @binding(5) var<storage, read> ids: array<u32>;           // (n,)
@group(0) @binding(6) var<storage, read_write> y: array<vec4<f32>>; // (n, dim / 4)

fn f16_at(words: u32, i: u32) -> f32 {
    return unpack2x16float(words)[i & 1u];
}

// Four Q6_K values: the nibbles of l at `lshift` with bits hshift.. of h's bytes on top, minus 32.
fn q6(l: u32, lshift: u32, h: u32, hshift: u32) -> vec4<f32> {
    let lo = (vec4<u32>(l >> lshift) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xFu);
    let hi = (vec4<u32>(h >> hshift) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(3u);
    return vec4<f32>(lo | (hi << vec4<u32>(4u))) - 32.0;
}

// Elements 4 * i4 .. 4 * i4 + 3 of chunk row `row`, dequantised.
fn weight4(row: u32, i4: u32) -> vec4<f32> {
    let b = row * (params.dim / 256u) + i4 / 64u;
    let e = (i4 % 64u) * 4u; // first of the four elements in the block
    let h = e / 128u;
    let i = (e % 128u) / 32u;
    let l = e % 32u;
    let lw = 16u * h + 8u * (i % 2u) + l / 4u;
    let hw = 8u * h + l / 4u;
    let s = f32(extractBits(bitcast<i32>(sc[b * 4u + e / 64u]), 8u * ((e / 16u) % 4u), 8u));
    return (f16_at(d[b / 2u], b) * s) * q6(ql[b * 8u + lw / 4u][lw % 4u], 4u * (i / 2u), qh[b * 4u + hw / 4u][hw % 4u], 2u * i);
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
