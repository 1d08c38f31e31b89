// IQ4_XS (w = (d * (sc - 32)) * KV[q] per 32-element sub-block, KV the 16 non-linear levels)
//@ layout
{"ggml": 23, "block": 256, "bytes": 136, "fields": [["qs", 8, 136], ["sl", 4, 8], ["dh", 0, 4]]}
//@ bindings
@group(0) @binding(1) var<storage, read> qs: array<vec4<u32>>; // (rows * k / 256, 8) sub-block ib's 16 bytes of nibbles in word ib, as IQ4_NL's blocks
@group(0) @binding(2) var<storage, read> sl: array<u32>;        // (rows * k / 256) low four bits of the sub-block scales: ib's at bit 4ib
@group(0) @binding(3) var<storage, read> dh: array<u32>;        // (rows * k / 256) f16 block scale d (low half), the scales' top two bits: ib's at bit 16 + 2ib
//@ shared

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

//@ matmul
// Row `row`'s 32 elements 32u .. 32u + 31 (sub-block u % 8 of block u / 8), dequantised.
fn unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
    let b = row * (params.k / 256u) + u / 8u;
    let w = qs[b * 8u + u % 8u];
    let s = sub_scale(b, u % 8u);
    return array<vec4<f32>, 8>(s * iq4(w.x, 0u), s * iq4(w.y, 0u), s * iq4(w.z, 0u), s * iq4(w.w, 0u),
                               s * iq4(w.x, 4u), s * iq4(w.y, 4u), s * iq4(w.z, 4u), s * iq4(w.w, 4u));
}

// Row `row`'s 32 elements 32u .. 32u + 31 dotted with xs, those elements of x.
fn dot_unit(row: u32, u: u32, xs: array<vec4<f32>, 8>) -> f32 {
    let b = row * (params.k / 256u) + u / 8u;
    let w = qs[b * 8u + u % 8u];
    let s = dot(iq4(w.x, 0u), xs[0]) + dot(iq4(w.y, 0u), xs[1]) + dot(iq4(w.z, 0u), xs[2]) + dot(iq4(w.w, 0u), xs[3])
          + dot(iq4(w.x, 4u), xs[4]) + dot(iq4(w.y, 4u), xs[5]) + dot(iq4(w.z, 4u), xs[6]) + dot(iq4(w.w, 4u), xs[7]);
    return sub_scale(b, u % 8u) * s;
}
//@ embedding
// Elements 4 * i4 .. 4 * i4 + 3 of chunk row `row`, dequantised.
fn weight4(row: u32, i4: u32) -> vec4<f32> {
    let b = row * (params.dim / 256u) + i4 / 64u;
    let ib = (i4 % 64u) / 8u; // sub-block
    let j = i4 % 8u;          // elements 4j .. 4j + 3 of it: the low (j < 4) or high nibbles of word j % 4
    return sub_scale(b, ib) * iq4(qs[b * 8u + ib][j % 4u], 4u * (j / 4u));
}
