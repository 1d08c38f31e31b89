// Q3_K (w = (d * sc) * (q - 4 * !hbit) per 16-element sub-block, sc signed)
//@ layout
{"ggml": 11, "block": 256, "bytes": 110, "fields": [["hm", 0, 32], ["qs", 32, 96], ["sc3", 96, 112], ["d", 108, 110]]}
//@ bindings
@group(0) @binding(1) var<storage, read> hm: array<vec4<u32>>; // (rows * k / 256, 2) high bits: elem 128h+32j+l in bit 4h+j of byte l
@group(0) @binding(2) var<storage, read> qs: array<vec4<u32>>; // (rows * k / 256, 4) two-bit quants: elem 128h+32j+l in bits 2j.. of byte 32h+l
@group(0) @binding(3) var<storage, read> sc3: array<u32>;       // (rows * k / 256, 4) signed sub-block scales (6-bit scale - 32), a byte each
@group(0) @binding(4) var<storage, read> d: array<u32>;         // (rows * k / 256) f16 block scales, two a word
//@ shared

fn f16_at(words: u32, i: u32) -> f32 {
    return unpack2x16float(words)[i & 1u];
}

// Four Q3_K values: bits `shift`.. of q's bytes with bit `hbit` of h's bytes as the third, minus 4.
fn q3(q: u32, shift: u32, h: u32, hbit: u32) -> vec4<f32> {
    let lo = (vec4<u32>(q >> shift) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(3u);
    let hi = (vec4<u32>(h >> hbit) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(1u);
    return vec4<f32>(lo | (hi << vec4<u32>(2u))) - 4.0;
}

//@ matmul
// Row `row`'s 32 elements 32u .. 32u + 31, dequantised (see dot_unit for the layout).
fn unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
    let b = row * (params.k / 256u) + u / 8u;
    let h = (u % 8u) / 4u;
    let j = u % 4u;
    let q0 = qs[b * 4u + 2u * h];
    let q1 = qs[b * 4u + 2u * h + 1u];
    let h0 = hm[b * 2u];
    let h1 = hm[b * 2u + 1u];
    let qb = 2u * j;
    let hb = 4u * h + j;
    let scales = bitcast<i32>(sc3[b * 4u + (u % 8u) / 2u]);
    let db = f16_at(d[b / 2u], b);
    let s0 = db * f32(extractBits(scales, 16u * (u % 2u), 8u));
    let s1 = db * f32(extractBits(scales, 16u * (u % 2u) + 8u, 8u));
    return array<vec4<f32>, 8>(s0 * q3(q0.x, qb, h0.x, hb), s0 * q3(q0.y, qb, h0.y, hb), s0 * q3(q0.z, qb, h0.z, hb), s0 * q3(q0.w, qb, h0.w, hb),
                               s1 * q3(q1.x, qb, h1.x, hb), s1 * q3(q1.y, qb, h1.y, hb), s1 * q3(q1.z, qb, h1.z, hb), s1 * q3(q1.w, qb, h1.w, hb));
}

// Row `row`'s 32 elements 32u .. 32u + 31 dotted with xs, those elements of x.
fn dot_unit(row: u32, u: u32, xs: array<vec4<f32>, 8>) -> f32 {
    let b = row * (params.k / 256u) + u / 8u;
    let h = (u % 8u) / 4u; // half of the block
    let j = u % 4u;        // quarter of the half: elements 128h + 32j + l, sub-blocks 8h + 2j (l < 16) and + 1
    let q0 = qs[b * 4u + 2u * h];
    let q1 = qs[b * 4u + 2u * h + 1u];
    let h0 = hm[b * 2u];
    let h1 = hm[b * 2u + 1u];
    let qb = 2u * j;
    let hb = 4u * h + j;
    let s0 = dot(q3(q0.x, qb, h0.x, hb), xs[0]) + dot(q3(q0.y, qb, h0.y, hb), xs[1]) + dot(q3(q0.z, qb, h0.z, hb), xs[2]) + dot(q3(q0.w, qb, h0.w, hb), xs[3]);
    let s1 = dot(q3(q1.x, qb, h1.x, hb), xs[4]) + dot(q3(q1.y, qb, h1.y, hb), xs[5]) + dot(q3(q1.z, qb, h1.z, hb), xs[6]) + dot(q3(q1.w, qb, h1.w, hb), xs[7]);
    let scales = bitcast<i32>(sc3[b * 4u + (u % 8u) / 2u]);
    let sc0 = f32(extractBits(scales, 16u * (u % 2u), 8u));
    let sc1 = f32(extractBits(scales, 16u * (u % 2u) + 8u, 8u));
    return f16_at(d[b / 2u], b) * (sc0 * s0 + sc1 * s1);
}
//@ embedding
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
