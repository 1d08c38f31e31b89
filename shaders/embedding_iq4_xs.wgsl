// embedding_iq4_xs: y[t] = dequant(table[ids[t]]) * scale, table IQ4_XS (w = (d * (sc - 32)) * KV[q] per 32-element sub-block, KV the 16 non-linear levels)   ref: reference.embedding   grid: (ceil(dim / 4 / WG_SIZE), n, 1), once per row chunk
// Composed by scripts/compose_shaders.py from shaders/compose/ops/embedding.wgsl and types/iq4_xs.wgsl: edit those.
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
@group(0) @binding(1) var<storage, read> qs: array<vec4<u32>>; // (rows * dim / 256, 8) sub-block ib's 16 bytes of nibbles in word ib, as IQ4_NL's blocks
@group(0) @binding(2) var<storage, read> sl: array<u32>;        // (rows * dim / 256) low four bits of the sub-block scales: ib's at bit 4ib
@group(0) @binding(3) var<storage, read> dh: array<u32>;        // (rows * dim / 256) f16 block scale d (low half), the scales' top two bits: ib's at bit 16 + 2ib
@group(0) @binding(4) var<storage, read> ids: array<u32>;           // (n,)
@group(0) @binding(5) var<storage, read_write> y: array<vec4<f32>>; // (n, dim / 4)

// The levels KV[0..16] (ggml's kvalues_iq4nl) as signed bytes, four a word, lowest first.
const KV = vec4<u32>(0xBFAD9881u, 0xF6EADDCFu, 0x26190D01u, 0x71594535u);

// Four IQ4_XS values: KV at the low (shift 0) or high (shift 4) nibbles of w's four bytes.
fn iq4(w: u32, shift: u32) -> vec4<f32> {
    let q = (vec4<u32>(w >> shift) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xFu);
    let kv = KV;
    let words = vec4<i32>(bitcast<i32>(kv[q.x >> 2u]), bitcast<i32>(kv[q.y >> 2u]), bitcast<i32>(kv[q.z >> 2u]), bitcast<i32>(kv[q.w >> 2u]));
    let bits = (q & vec4<u32>(3u)) * 8u;
    return vec4<f32>(vec4<i32>(extractBits(words.x, bits.x, 8u), extractBits(words.y, bits.y, 8u), extractBits(words.z, bits.z, 8u), extractBits(words.w, bits.w, 8u)));
}

// d * (sc - 32): the scale of sub-block ib of block b.
fn sub_scale(b: u32, ib: u32) -> f32 {
    let word = dh[b];
    let sc = extractBits(sl[b], 4u * ib, 4u) | (extractBits(word, 16u + 2u * ib, 2u) << 4u);
    return unpack2x16float(word).x * (f32(sc) - 32.0);
}

// Elements 4 * i4 .. 4 * i4 + 3 of chunk row `row`, dequantised.
fn weight4(row: u32, i4: u32) -> vec4<f32> {
    let b = row * (params.dim / 256u) + i4 / 64u;
    let ib = (i4 % 64u) / 8u; // sub-block
    let j = i4 % 8u;          // elements 4j .. 4j + 3 of it: the low (j < 4) or high nibbles of word j % 4
    return sub_scale(b, ib) * iq4(qs[b * 8u + ib][j % 4u], 4u * (j / 4u));
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
