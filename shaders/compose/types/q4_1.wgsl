// Q4_1 (w = d * q + m)
//@ layout
{"ggml": 3, "block": 32, "bytes": 20, "fields": [["qs", 4, 20], ["dm", 0, 4]]}
//@ bindings
@group(0) @binding(1) var<storage, read> qs: array<vec4<u32>>; // (rows * k / 32) blocks of nibbles, as Q4_0
@group(0) @binding(2) var<storage, read> dm: array<u32>;        // (rows * k / 32) f16 pairs (d, m), one block a word
//@ shared

// The low (shift 0) or high (shift 4) nibbles of w's four bytes.
fn nibbles(w: u32, shift: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(w >> shift) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xFu));
}

//@ matmul
fn sum_x(xs: array<vec4<f32>, 8>) -> f32 {
    return dot(((xs[0] + xs[1]) + (xs[2] + xs[3])) + ((xs[4] + xs[5]) + (xs[6] + xs[7])), vec4<f32>(1.0));
}

// Row `row`'s 32 elements 32u .. 32u + 31, dequantised.
fn unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
    let b = row * (params.k / 32u) + u;
    let w = qs[b];
    let s = unpack2x16float(dm[b]);
    return array<vec4<f32>, 8>(fma(vec4<f32>(s.x), nibbles(w.x, 0u), vec4<f32>(s.y)), fma(vec4<f32>(s.x), nibbles(w.y, 0u), vec4<f32>(s.y)),
                               fma(vec4<f32>(s.x), nibbles(w.z, 0u), vec4<f32>(s.y)), fma(vec4<f32>(s.x), nibbles(w.w, 0u), vec4<f32>(s.y)),
                               fma(vec4<f32>(s.x), nibbles(w.x, 4u), vec4<f32>(s.y)), fma(vec4<f32>(s.x), nibbles(w.y, 4u), vec4<f32>(s.y)),
                               fma(vec4<f32>(s.x), nibbles(w.z, 4u), vec4<f32>(s.y)), fma(vec4<f32>(s.x), nibbles(w.w, 4u), vec4<f32>(s.y)));
}

// Row `row`'s 32 elements 32u .. 32u + 31 dotted with xs, those elements of x.
fn dot_unit(row: u32, u: u32, xs: array<vec4<f32>, 8>) -> f32 {
    let b = row * (params.k / 32u) + u;
    let w = qs[b];
    let s = dot(nibbles(w.x, 0u), xs[0]) + dot(nibbles(w.y, 0u), xs[1]) + dot(nibbles(w.z, 0u), xs[2]) + dot(nibbles(w.w, 0u), xs[3])
          + dot(nibbles(w.x, 4u), xs[4]) + dot(nibbles(w.y, 4u), xs[5]) + dot(nibbles(w.z, 4u), xs[6]) + dot(nibbles(w.w, 4u), xs[7]);
    let dm_b = unpack2x16float(dm[b]);
    return dm_b.x * s + dm_b.y * sum_x(xs);
}
//@ embedding
// Elements 4 * i4 .. 4 * i4 + 3 of chunk row `row`, dequantised.
fn weight4(row: u32, i4: u32) -> vec4<f32> {
    let b = row * (params.dim / 32u) + i4 / 8u;
    let j = i4 % 8u; // elements 4j .. 4j + 3 of the block: the low (j < 4) or high nibbles of word j % 4
    let s = unpack2x16float(dm[b]);
    return s.x * nibbles(qs[b][j % 4u], 4u * (j / 4u)) + s.y;
}
