// Q5_1 (w = d * q + m, q = nibble | qh bit << 4)
//@ layout
{"ggml": 7, "block": 32, "bytes": 24, "fields": [["qs", 8, 24], ["qh", 4, 8], ["dm", 0, 4]]}
//@ bindings
@group(0) @binding(1) var<storage, read> qs: array<vec4<u32>>; // (rows * k / 32) blocks of low nibbles, as Q4_0
@group(0) @binding(2) var<storage, read> qh: array<u32>;        // (rows * k / 32) fifth bits: bit j = element j of the block
@group(0) @binding(3) var<storage, read> dm: array<u32>;        // (rows * k / 32) f16 pairs (d, m), one block a word
//@ shared

// Four Q5_1 values: w's nibbles at `shift` with the fifth bits h bits 0..3.
fn q5(w: u32, shift: u32, h: u32) -> vec4<f32> {
    let high = ((vec4<u32>(h) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u)) << vec4<u32>(4u);
    return vec4<f32>(((vec4<u32>(w >> shift) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xFu)) | high);
}

//@ matmul
fn sum_x(xs: array<vec4<f32>, 8>) -> f32 {
    return dot(((xs[0] + xs[1]) + (xs[2] + xs[3])) + ((xs[4] + xs[5]) + (xs[6] + xs[7])), vec4<f32>(1.0));
}

// Row `row`'s 32 elements 32u .. 32u + 31, dequantised.
fn unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
    let b = row * (params.k / 32u) + u;
    let w = qs[b];
    let h = qh[b];
    let s = unpack2x16float(dm[b]);
    let d = vec4<f32>(s.x);
    let m = vec4<f32>(s.y);
    return array<vec4<f32>, 8>(fma(d, q5(w.x, 0u, h >> 0u), m), fma(d, q5(w.y, 0u, h >> 4u), m), fma(d, q5(w.z, 0u, h >> 8u), m), fma(d, q5(w.w, 0u, h >> 12u), m),
                               fma(d, q5(w.x, 4u, h >> 16u), m), fma(d, q5(w.y, 4u, h >> 20u), m), fma(d, q5(w.z, 4u, h >> 24u), m), fma(d, q5(w.w, 4u, h >> 28u), m));
}

// Row `row`'s 32 elements 32u .. 32u + 31 dotted with xs, those elements of x.
fn dot_unit(row: u32, u: u32, xs: array<vec4<f32>, 8>) -> f32 {
    let b = row * (params.k / 32u) + u;
    let w = qs[b];
    let h = qh[b];
    let s = dot(q5(w.x, 0u, h >> 0u), xs[0]) + dot(q5(w.y, 0u, h >> 4u), xs[1]) + dot(q5(w.z, 0u, h >> 8u), xs[2]) + dot(q5(w.w, 0u, h >> 12u), xs[3])
          + dot(q5(w.x, 4u, h >> 16u), xs[4]) + dot(q5(w.y, 4u, h >> 20u), xs[5]) + dot(q5(w.z, 4u, h >> 24u), xs[6]) + dot(q5(w.w, 4u, h >> 28u), xs[7]);
    let dm_b = unpack2x16float(dm[b]);
    return dm_b.x * s + dm_b.y * sum_x(xs);
}
//@ embedding
// Elements 4 * i4 .. 4 * i4 + 3 of chunk row `row`, dequantised.
fn weight4(row: u32, i4: u32) -> vec4<f32> {
    let b = row * (params.dim / 32u) + i4 / 8u;
    let j = i4 % 8u; // elements 4j .. 4j + 3 of the block: the low (j < 4) or high nibbles of word j % 4
    let s = unpack2x16float(dm[b]);
    return s.x * q5(qs[b][j % 4u], 4u * (j / 4u), qh[b] >> (4u * j)) + s.y;
}
