// Q8_0 (w = d * q)
//@ layout
{"ggml": 8, "block": 32, "bytes": 34, "fields": [["qs", 2, 34], ["d", 0, 2]]}
//@ bindings
@group(0) @binding(1) var<storage, read> qs: array<vec4<u32>>; // (rows, k / 16) int8 quants, four a word
@group(0) @binding(2) var<storage, read> d: array<u32>;        // (rows * k / 32) f16 block scales, two a word
//@ shared

fn f16_at(words: u32, i: u32) -> f32 {
    return unpack2x16float(words)[i & 1u];
}

fn i8x4(w: u32) -> vec4<f32> {
    return vec4<f32>(vec4<i32>(vec4<u32>(w) << vec4<u32>(24u, 16u, 8u, 0u)) >> vec4<u32>(24u)); // sign-extended bytes
}

//@ matmul
// Row `row`'s 32 elements 32u .. 32u + 31 (block u), dequantised.
fn unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
    let b = row * (params.k / 32u) + u;
    let q0 = qs[2u * b];
    let q1 = qs[2u * b + 1u];
    let s = f16_at(d[b / 2u], b);
    return array<vec4<f32>, 8>(s * i8x4(q0.x), s * i8x4(q0.y), s * i8x4(q0.z), s * i8x4(q0.w),
                               s * i8x4(q1.x), s * i8x4(q1.y), s * i8x4(q1.z), s * i8x4(q1.w));
}

// Row `row`'s 32 elements 32u .. 32u + 31 (block u) dotted with xs, those elements of x.
fn dot_unit(row: u32, u: u32, xs: array<vec4<f32>, 8>) -> f32 {
    let b = row * (params.k / 32u) + u;
    let q0 = qs[2u * b];
    let q1 = qs[2u * b + 1u];
    let s = dot(i8x4(q0.x), xs[0]) + dot(i8x4(q0.y), xs[1]) + dot(i8x4(q0.z), xs[2]) + dot(i8x4(q0.w), xs[3])
          + dot(i8x4(q1.x), xs[4]) + dot(i8x4(q1.y), xs[5]) + dot(i8x4(q1.z), xs[6]) + dot(i8x4(q1.w), xs[7]);
    return f16_at(d[b / 2u], b) * s;
}
//@ embedding
// Elements 4 * i4 .. 4 * i4 + 3 of chunk row `row`, dequantised.
fn weight4(row: u32, i4: u32) -> vec4<f32> {
    let b = row * (params.dim / 32u) + i4 / 8u;
    return f16_at(d[b / 2u], b) * i8x4(qs[b * 2u + (i4 % 8u) / 4u][i4 % 4u]);
}
