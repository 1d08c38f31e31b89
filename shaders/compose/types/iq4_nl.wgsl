// IQ4_NL (w = d * KV[q], KV the 16 non-linear levels)
//@ layout
{"ggml": 20, "block": 32, "bytes": 18, "fields": [["qs", 2, 18], ["d", 0, 2]]}
//@ bindings
@group(0) @binding(1) var<storage, read> qs: array<vec4<u32>>; // (rows * k / 32) blocks of nibbles, as Q4_0
@group(0) @binding(2) var<storage, read> d: array<u32>;         // (rows * k / 32) f16 block scales, two a word
//@ shared

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

//@ matmul
// Row `row`'s 32 elements 32u .. 32u + 31, dequantised.
fn unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
    let b = row * (params.k / 32u) + u;
    let w = qs[b];
    let s = f16_at(d[b / 2u], b);
    return array<vec4<f32>, 8>(s * iq4(w.x, 0u), s * iq4(w.y, 0u), s * iq4(w.z, 0u), s * iq4(w.w, 0u),
                               s * iq4(w.x, 4u), s * iq4(w.y, 4u), s * iq4(w.z, 4u), s * iq4(w.w, 4u));
}

// Row `row`'s 32 elements 32u .. 32u + 31 dotted with xs, those elements of x.
fn dot_unit(row: u32, u: u32, xs: array<vec4<f32>, 8>) -> f32 {
    let b = row * (params.k / 32u) + u;
    let w = qs[b];
    let s = dot(iq4(w.x, 0u), xs[0]) + dot(iq4(w.y, 0u), xs[1]) + dot(iq4(w.z, 0u), xs[2]) + dot(iq4(w.w, 0u), xs[3])
          + dot(iq4(w.x, 4u), xs[4]) + dot(iq4(w.y, 4u), xs[5]) + dot(iq4(w.z, 4u), xs[6]) + dot(iq4(w.w, 4u), xs[7]);
    return f16_at(d[b / 2u], b) * s;
}
//@ embedding
// Elements 4 * i4 .. 4 * i4 + 3 of chunk row `row`, dequantised.
fn weight4(row: u32, i4: u32) -> vec4<f32> {
    let b = row * (params.dim / 32u) + i4 / 8u;
    let j = i4 % 8u; // elements 4j .. 4j + 3 of the block: the low (j < 4) or high nibbles of word j % 4
    return f16_at(d[b / 2u], b) * iq4(qs[b][j % 4u], 4u * (j / 4u));
}
