// Q6_K (w = (d * sc) * (q - 32) per 16-element sub-block)
//@ layout
{"ggml": 14, "block": 256, "bytes": 210, "fields": [["ql", 0, 128], ["qh", 128, 192], ["sc", 192, 208], ["d", 208, 210]]}
//@ bindings
@group(0) @binding(1) var<storage, read> ql: array<vec4<u32>>; // (rows * k / 256, 8) low nibbles: elem 128h+32i+l in byte 64h+32(i%2)+l, high nibble when i >= 2
@group(0) @binding(2) var<storage, read> qh: array<vec4<u32>>; // (rows * k / 256, 4) high bit pairs: elem 128h+32i+l in bits 2i.. of byte 32h+l
@group(0) @binding(3) var<storage, read> sc: array<u32>;        // (rows * k / 256, 4) signed sub-block scales, a byte each
@group(0) @binding(4) var<storage, read> d: array<u32>;         // (rows * k / 256) f16 block scales, two a word
//@ shared

fn f16_at(words: u32, i: u32) -> f32 {
    return unpack2x16float(words)[i & 1u];
}

// Four Q6_K values: the nibbles of l at `lshift` with bits hshift.. of h's bytes on top, minus 32.
fn q6(l: u32, lshift: u32, h: u32, hshift: u32) -> vec4<f32> {
    let lo = (vec4<u32>(l >> lshift) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xFu);
    let hi = (vec4<u32>(h >> hshift) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(3u);
    return vec4<f32>(lo | (hi << vec4<u32>(4u))) - 32.0;
}

//@ matmul
// Row `row`'s 32 elements 32u .. 32u + 31, dequantised (see dot_unit for the layout).
fn unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
    let b = row * (params.k / 256u) + u / 8u;
    let h = (u % 8u) / 4u;
    let i = u % 4u;
    let l0 = ql[b * 8u + 4u * h + 2u * (i % 2u)];
    let l1 = ql[b * 8u + 4u * h + 2u * (i % 2u) + 1u];
    let h0 = qh[b * 4u + 2u * h];
    let h1 = qh[b * 4u + 2u * h + 1u];
    let ls = 4u * (i / 2u);
    let hs = 2u * i;
    let scales = bitcast<i32>(sc[b * 4u + 2u * h + i / 2u]);
    let db = f16_at(d[b / 2u], b);
    let s0 = db * f32(extractBits(scales, 16u * (i % 2u), 8u));
    let s1 = db * f32(extractBits(scales, 16u * (i % 2u) + 8u, 8u));
    return array<vec4<f32>, 8>(s0 * q6(l0.x, ls, h0.x, hs), s0 * q6(l0.y, ls, h0.y, hs), s0 * q6(l0.z, ls, h0.z, hs), s0 * q6(l0.w, ls, h0.w, hs),
                               s1 * q6(l1.x, ls, h1.x, hs), s1 * q6(l1.y, ls, h1.y, hs), s1 * q6(l1.z, ls, h1.z, hs), s1 * q6(l1.w, ls, h1.w, hs));
}

// Row `row`'s 32 elements 32u .. 32u + 31 dotted with xs, those elements of x.
fn dot_unit(row: u32, u: u32, xs: array<vec4<f32>, 8>) -> f32 {
    let b = row * (params.k / 256u) + u / 8u;
    let h = (u % 8u) / 4u; // half of the block
    let i = u % 4u;        // quarter of the half: elements 128h + 32i + l, sub-blocks 8h + 2i (l < 16) and + 1
    let l0 = ql[b * 8u + 4u * h + 2u * (i % 2u)];
    let l1 = ql[b * 8u + 4u * h + 2u * (i % 2u) + 1u];
    let h0 = qh[b * 4u + 2u * h];
    let h1 = qh[b * 4u + 2u * h + 1u];
    let ls = 4u * (i / 2u);
    let hs = 2u * i;
    let s0 = dot(q6(l0.x, ls, h0.x, hs), xs[0]) + dot(q6(l0.y, ls, h0.y, hs), xs[1]) + dot(q6(l0.z, ls, h0.z, hs), xs[2]) + dot(q6(l0.w, ls, h0.w, hs), xs[3]);
    let s1 = dot(q6(l1.x, ls, h1.x, hs), xs[4]) + dot(q6(l1.y, ls, h1.y, hs), xs[5]) + dot(q6(l1.z, ls, h1.z, hs), xs[6]) + dot(q6(l1.w, ls, h1.w, hs), xs[7]);
    let scales = bitcast<i32>(sc[b * 4u + 2u * h + i / 2u]);
    let sc0 = f32(extractBits(scales, 16u * (i % 2u), 8u));
    let sc1 = f32(extractBits(scales, 16u * (i % 2u) + 8u, 8u));
    return f16_at(d[b / 2u], b) * (sc0 * s0 + sc1 * s1);
}
//@ embedding
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
