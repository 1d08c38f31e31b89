// Q5_K (w = (d * sc) * q - dmin * m per 32-element sub-block, q = nibble | qh bit << 4)
//@ layout
{"ggml": 13, "block": 256, "bytes": 176, "fields": [["qs", 48, 176], ["qh", 16, 48], ["sm", 4, 20], ["dm", 0, 4]]}
//@ bindings
@group(0) @binding(1) var<storage, read> qs: array<vec4<u32>>; // (rows * k / 256, 8) low nibbles as Q4_K: word 8g + l/4 = elems 64g+l.. (low), 64g+32+l.. (high)
@group(0) @binding(2) var<storage, read> qh: array<vec4<u32>>; // (rows * k / 256, 2) fifth bits: elem 32s + l in bit s of byte l
@group(0) @binding(3) var<storage, read> sm: array<u32>;        // (rows * k / 256, 4) six-bit sub-block scales sc[8] then mins m[8], a byte each
@group(0) @binding(4) var<storage, read> dm: array<u32>;        // (rows * k / 256) f16 pairs (d, dmin), one block a word
//@ shared

// Four Q5_K values: the nibbles of w at `shift` with bit `hbit` of h's bytes on top.
fn q5k(w: u32, shift: u32, h: u32, hbit: u32) -> vec4<f32> {
    let lo = (vec4<u32>(w >> shift) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xFu);
    let hi = (vec4<u32>(h >> hbit) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(1u);
    return vec4<f32>(lo | (hi << vec4<u32>(4u)));
}

//@ matmul
fn sum_x(xs: array<vec4<f32>, 8>) -> f32 {
    return dot(((xs[0] + xs[1]) + (xs[2] + xs[3])) + ((xs[4] + xs[5]) + (xs[6] + xs[7])), vec4<f32>(1.0));
}

// Row `row`'s 32 elements 32u .. 32u + 31 (sub-block u % 8 of block u / 8), dequantised.
fn unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
    let b = row * (params.k / 256u) + u / 8u;
    let sub = u % 8u;
    let shift = 4u * (sub % 2u);
    let w0 = qs[b * 8u + 2u * (sub / 2u)];
    let w1 = qs[b * 8u + 2u * (sub / 2u) + 1u];
    let h0 = qh[b * 2u];
    let h1 = qh[b * 2u + 1u];
    let dm_b = unpack2x16float(dm[b]);
    let s = vec4<f32>(dm_b.x * f32(extractBits(sm[b * 4u + sub / 4u], 8u * (sub % 4u), 8u)));
    let m = vec4<f32>(-dm_b.y * f32(extractBits(sm[b * 4u + 2u + sub / 4u], 8u * (sub % 4u), 8u)));
    return array<vec4<f32>, 8>(fma(s, q5k(w0.x, shift, h0.x, sub), m), fma(s, q5k(w0.y, shift, h0.y, sub), m),
                               fma(s, q5k(w0.z, shift, h0.z, sub), m), fma(s, q5k(w0.w, shift, h0.w, sub), m),
                               fma(s, q5k(w1.x, shift, h1.x, sub), m), fma(s, q5k(w1.y, shift, h1.y, sub), m),
                               fma(s, q5k(w1.z, shift, h1.z, sub), m), fma(s, q5k(w1.w, shift, h1.w, sub), m));
}

// Row `row`'s 32 elements 32u .. 32u + 31 dotted with xs, those elements of x.
fn dot_unit(row: u32, u: u32, xs: array<vec4<f32>, 8>) -> f32 {
    let b = row * (params.k / 256u) + u / 8u;
    let sub = u % 8u; // low (even) or high (odd) nibbles of 32-byte group sub / 2; fifth bits bit sub
    let shift = 4u * (sub % 2u);
    let w0 = qs[b * 8u + 2u * (sub / 2u)];
    let w1 = qs[b * 8u + 2u * (sub / 2u) + 1u];
    let h0 = qh[b * 2u];
    let h1 = qh[b * 2u + 1u];
    let s = dot(q5k(w0.x, shift, h0.x, sub), xs[0]) + dot(q5k(w0.y, shift, h0.y, sub), xs[1]) + dot(q5k(w0.z, shift, h0.z, sub), xs[2]) + dot(q5k(w0.w, shift, h0.w, sub), xs[3])
          + dot(q5k(w1.x, shift, h1.x, sub), xs[4]) + dot(q5k(w1.y, shift, h1.y, sub), xs[5]) + dot(q5k(w1.z, shift, h1.z, sub), xs[6]) + dot(q5k(w1.w, shift, h1.w, sub), xs[7]);
    let sc = f32(extractBits(sm[b * 4u + sub / 4u], 8u * (sub % 4u), 8u));
    let m = f32(extractBits(sm[b * 4u + 2u + sub / 4u], 8u * (sub % 4u), 8u));
    let dm_b = unpack2x16float(dm[b]);
    return (dm_b.x * sc) * s - (dm_b.y * m) * sum_x(xs);
}
//@ embedding
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
