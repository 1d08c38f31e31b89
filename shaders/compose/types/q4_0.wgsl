// Q4_0 (w = d * (q - 8))
//@ layout
{"ggml": 2, "block": 32, "bytes": 18, "fields": [["qs", 2, 18], ["d", 0, 2]]}
//@ bindings
@group(0) @binding(1) var<storage, read> qs: array<vec4<u32>>; // (rows * k / 32) blocks of nibbles: byte j = elems j (low), j + 16 (high)
@group(0) @binding(2) var<storage, read> d: array<u32>;         // (rows * k / 32) f16 block scales, two a word
//@ shared

fn f16_at(words: u32, i: u32) -> f32 {
    return unpack2x16float(words)[i & 1u];
}

// The low (shift 0) or high (shift 4) nibbles of w's four bytes.
fn nibbles(w: u32, shift: u32) -> vec4<f32> {
    return vec4<f32>((vec4<u32>(w >> shift) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xFu));
}

//@ matmul
// Row `row`'s 32 elements 32u .. 32u + 31, dequantised.
fn unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
    let b = row * (params.k / 32u) + u;
    let w = qs[b];
    let s = f16_at(d[b / 2u], b);
    return array<vec4<f32>, 8>(s * (nibbles(w.x, 0u) - 8.0), s * (nibbles(w.y, 0u) - 8.0), s * (nibbles(w.z, 0u) - 8.0), s * (nibbles(w.w, 0u) - 8.0),
                               s * (nibbles(w.x, 4u) - 8.0), s * (nibbles(w.y, 4u) - 8.0), s * (nibbles(w.z, 4u) - 8.0), s * (nibbles(w.w, 4u) - 8.0));
}

// Row `row`'s 32 elements 32u .. 32u + 31 dotted with xs, those elements of x.
fn dot_unit(row: u32, u: u32, xs: array<vec4<f32>, 8>) -> f32 {
    let b = row * (params.k / 32u) + u;
    let w = qs[b];
    let s = dot(nibbles(w.x, 0u) - 8.0, xs[0]) + dot(nibbles(w.y, 0u) - 8.0, xs[1]) + dot(nibbles(w.z, 0u) - 8.0, xs[2]) + dot(nibbles(w.w, 0u) - 8.0, xs[3])
          + dot(nibbles(w.x, 4u) - 8.0, xs[4]) + dot(nibbles(w.y, 4u) - 8.0, xs[5]) + dot(nibbles(w.z, 4u) - 8.0, xs[6]) + dot(nibbles(w.w, 4u) - 8.0, xs[7]);
    return f16_at(d[b / 2u], b) * s;
}
//@ embedding
// Elements 4 * i4 .. 4 * i4 + 3 of chunk row `row`, dequantised.
fn weight4(row: u32, i4: u32) -> vec4<f32> {
    let b = row * (params.dim / 32u) + i4 / 8u;
    let j = i4 % 8u; // elements 4j .. 4j + 3 of the block: the low (j < 4) or high nibbles of word j % 4
    return f16_at(d[b / 2u], b) * (nibbles(qs[b][j % 4u], 4u * (j / 4u)) - 8.0);
}
