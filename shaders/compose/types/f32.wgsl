// F32
//@ layout
{"ggml": 0, "block": 1, "bytes": 4, "fields": [["w", 0, 4]]}
//@ bindings
@group(0) @binding(1) var<storage, read> w: array<vec4<f32>>; // (rows, ceil(k / 32) * 8): rows zero-padded to whole 32-element units
//@ shared

// Elements 4 * i4 .. 4 * i4 + 3 of chunk row `row`, dequantised. A row is k elements (k % 4 == 0)
// stored as ceil(k / 32) whole units, zeros after the k-th (the repacking pads it: weights.py).
fn weight4(row: u32, i4: u32) -> vec4<f32> {
    return w[row * ((params.k + 31u) / 32u * 8u) + i4];
}
//@ matmul

// Row `row`'s 32 elements 32u .. 32u + 31, dequantised.
fn unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
    var w: array<vec4<f32>, 8>;
    for (var j = 0u; j < 8u; j++) {
        w[j] = weight4(row, 8u * u + j);
    }
    return w;
}

// Row `row`'s 32 elements 32u .. 32u + 31 dotted with xs, those elements of x.
fn dot_unit(row: u32, u: u32, xs: array<vec4<f32>, 8>) -> f32 {
    var s = 0.0;
    for (var j = 0u; j < 8u; j++) {
        s += dot(weight4(row, 8u * u + j), xs[j]);
    }
    return s;
}
//@ embedding
