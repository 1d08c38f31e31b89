// embedding_q5_k: y[t] = dequant(table[ids[t]]) * scale, table Q5_K (w = (d * sc) * q - dmin * m per 32-element sub-block, q = nibble | qh bit << 4)   ref: reference.embedding   grid: (ceil(dim / 4 / WG_SIZE), n, 1), once per row chunk
// Composed by scripts/compose_shaders.py from shaders/compose/ops/embedding.wgsl and types/q5_k.wgsl: edit those.
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
@group(0) @binding(1) var<storage, read> qs: array<vec4<u32>>; // (rows * dim / 256, 8) low nibbles as Q4_K: word 8g + l/4 = elems 64g+l.. (low), 64g+32+l.. (high)
@group(0) @binding(2) var<storage, read> qh: array<vec4<u32>>; // (rows * dim / 256, 2) fifth bits: elem 32s + l in bit s of byte l
@group(0) @binding(3) var<storage, read> sm: array<u32>;        // (rows * dim / 256, 4) six-bit sub-block scales sc[8] then mins m[8], a byte each
@group(0) @binding(4) var<storage, read> dm: array<u32>;        // (rows * dim / 256) f16 pairs (d, dmin), one block a word
@group(0) @binding(5) var<storage, read> ids: array<u32>;           // (n,)
@group(0) @binding(6) var<storage, read_write> y: array<vec4<f32>>; // (n, dim / 4)

// Four Q5_K values: the nibbles of w at `shift` with bit `hbit` of h's bytes on top.
fn q5k(w: u32, shift: u32, h: u32, hbit: u32) -> vec4<f32> {
    let lo = (vec4<u32>(w >> shift) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xFu);
    let hi = (vec4<u32>(h >> hbit) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(1u);
    return vec4<f32>(lo | (hi << vec4<u32>(4u)));
}

// Elements 4 * i4 .. 4 * i4 + 3 of chunk row `row`, dequantised.
fn weight4(row: u32, i4: u32) -> vec4<f32> {
    let b = row * (params.dim / 256u) + i4 / 64u;
    let e = (i4 % 64u) * 4u; // first of the four elements in the block
    let sub = e / 32u;       // sub-block 2g (low nibbles) or 2g + 1 (high) of group g = e / 64
    let word = (e / 64u) * 8u + (e % 32u) / 4u;
    let hword = (e % 32u) / 4u;
    let sc = f32(extractBits(sm[b * 4u + sub / 4u], 8u * (sub % 4u), 8u));
    let m = f32(extractBits(sm[b * 4u + 2u + sub / 4u], 8u * (sub % 4u), 8u));
    let s = unpack2x16float(dm[b]);
    return (s.x * sc) * q5k(qs[b * 8u + word / 4u][word % 4u], 4u * (sub % 2u), qh[b * 2u + hword / 4u][hword % 4u], sub) - s.y * m;
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
