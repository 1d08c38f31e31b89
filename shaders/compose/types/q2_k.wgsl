// Q2_K (w = (d * sc) * q - dmin * m per 16-element sub-block)
//@ layout
{"ggml": 10, "block": 256, "bytes": 84, "fields": [["qs", 16, 80], ["sc", 0, 16], ["dm", 80, 84]]}
//@ bindings
@group(0) @binding(1) var<storage, read> qs: array<vec4<u32>>; // (rows * k / 256, 4) two-bit quants: elem 128h+32j+l in bits 2j.. of byte 32h+l
@group(0) @binding(2) var<storage, read> sc: array<u32>;        // (rows * k / 256, 4) sub-block scale (low nibble) and min (high), a byte each
@group(0) @binding(3) var<storage, read> dm: array<u32>;        // (rows * k / 256) f16 pairs (d, dmin), one block a word
//@ shared

// Four Q2_K values: bits `shift`.. of q's bytes.
fn q2(q: u32, shift: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(q >> shift) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(3u));
}

//@ matmul
// Row `row`'s 32 elements 32u .. 32u + 31, dequantised (see dot_unit for the layout).
fn unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
    let b = row * (params.k / 256u) + u / 8u;
    let h = (u % 8u) / 4u;
    let qb = 2u * (u % 4u);
    let q0 = qs[b * 4u + 2u * h];
    let q1 = qs[b * 4u + 2u * h + 1u];
    let scales = sc[b * 4u + (u % 8u) / 2u];
    let at = 16u * (u % 2u);
    let dm_b = unpack2x16float(dm[b]);
    let s0 = vec4<f32>(dm_b.x * f32(extractBits(scales, at, 4u)));
    let m0 = vec4<f32>(-dm_b.y * f32(extractBits(scales, at + 4u, 4u)));
    let s1 = vec4<f32>(dm_b.x * f32(extractBits(scales, at + 8u, 4u)));
    let m1 = vec4<f32>(-dm_b.y * f32(extractBits(scales, at + 12u, 4u)));
    return array<vec4<f32>, 8>(fma(s0, q2(q0.x, qb), m0), fma(s0, q2(q0.y, qb), m0), fma(s0, q2(q0.z, qb), m0), fma(s0, q2(q0.w, qb), m0),
                               fma(s1, q2(q1.x, qb), m1), fma(s1, q2(q1.y, qb), m1), fma(s1, q2(q1.z, qb), m1), fma(s1, q2(q1.w, qb), m1));
}

// Row `row`'s 32 elements 32u .. 32u + 31 dotted with xs, those elements of x.
fn dot_unit(row: u32, u: u32, xs: array<vec4<f32>, 8>) -> f32 {
    let b = row * (params.k / 256u) + u / 8u;
    let h = (u % 8u) / 4u; // half of the block
    let qb = 2u * (u % 4u); // quarter j of the half: elements 128h + 32j + l, sub-blocks 8h + 2j (l < 16) and + 1
    let q0 = qs[b * 4u + 2u * h];
    let q1 = qs[b * 4u + 2u * h + 1u];
    let s0 = dot(q2(q0.x, qb), xs[0]) + dot(q2(q0.y, qb), xs[1]) + dot(q2(q0.z, qb), xs[2]) + dot(q2(q0.w, qb), xs[3]);
    let s1 = dot(q2(q1.x, qb), xs[4]) + dot(q2(q1.y, qb), xs[5]) + dot(q2(q1.z, qb), xs[6]) + dot(q2(q1.w, qb), xs[7]);
    let x0 = dot((xs[0] + xs[1]) + (xs[2] + xs[3]), vec4<f32>(1.0));
    let x1 = dot((xs[4] + xs[5]) + (xs[6] + xs[7]), vec4<f32>(1.0));
    let scales = sc[b * 4u + (u % 8u) / 2u];
    let at = 16u * (u % 2u);
    let dm_b = unpack2x16float(dm[b]);
    return dm_b.x * (f32(extractBits(scales, at, 4u)) * s0 + f32(extractBits(scales, at + 8u, 4u)) * s1)
         - dm_b.y * (f32(extractBits(scales, at + 4u, 4u)) * x0 + f32(extractBits(scales, at + 12u, 4u)) * x1);
}
//@ embedding
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
