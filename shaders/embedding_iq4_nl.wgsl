// embedding_iq4_nl: y[t] = dequant(table[ids[t]]) * scale, table IQ4_NL (w = d * KV[q], KV the 16 non-linear levels)   ref: reference.embedding   grid: (ceil(dim / 4 / WG_SIZE), n, 1), once per row chunk
// Composed by scripts/compose_shaders.py from shaders/compose/ops/embedding.wgsl and types/iq4_nl.wgsl: edit those.
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
@group(0) @binding(1) var<storage, read> qs: array<vec4<u32>>; // (rows * dim / 32) blocks of nibbles, as Q4_0
@group(0) @binding(2) var<storage, read> d: array<u32>;         // (rows * dim / 32) f16 block scales, two a word
@group(0) @binding(3) var<storage, read> ids: array<u32>;           // (n,)
@group(0) @binding(4) var<storage, read_write> y: array<vec4<f32>>; // (n, dim / 4)

fn f16_at(words: u32, i: u32) -> f32 {
    return unpack2x16float(words)[i & 1u];
}

// The levels KV[0..16] (ggml's kvalues_iq4nl) as signed bytes, four a word, lowest first.
const KV = vec4<u32>(0xBFAD9881u, 0xF6EADDCFu, 0x26190D01u, 0x71594535u);

// Four IQ4_NL values: KV at the low (shift 0) or high (shift 4) nibbles of w's four bytes.
fn iq4(w: u32, shift: u32) -> vec4<f32> {
    let q = (vec4<u32>(w >> shift) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xFu);
    let kv = KV;
    let words = vec4<i32>(bitcast<i32>(kv[q.x >> 2u]), bitcast<i32>(kv[q.y >> 2u]), bitcast<i32>(kv[q.z >> 2u]), bitcast<i32>(kv[q.w >> 2u]));
    let bits = (q & vec4<u32>(3u)) * 8u;
    return vec4<f32>(vec4<i32>(extractBits(words.x, bits.x, 8u), extractBits(words.y, bits.y, 8u), extractBits(words.z, bits.z, 8u), extractBits(words.w, bits.w, 8u)));
}

// Elements 4 * i4 .. 4 * i4 + 3 of chunk row `row`, dequantised.
fn weight4(row: u32, i4: u32) -> vec4<f32> {
    let b = row * (params.dim / 32u) + i4 / 8u;
    let j = i4 % 8u; // elements 4j .. 4j + 3 of the block: the low (j < 4) or high nibbles of word j % 4
    return f16_at(d[b / 2u], b) * iq4(qs[b][j % 4u], 4u * (j / 4u));
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
