// rope: rotate dim pairs (a, b) of each head's first n_rot dims by theta = pos / pos_scale * base^(-2i / n_rot): (a cos - b sin, b cos + a sin)   ref: reference.rope   grid: (ceil(heads * head_dim / 2 / WG_SIZE), n, 1)
// neox = 1 pairs dims (i, i + n_rot / 2), otherwise (2i, 2i + 1); dims from n_rot on pass through.
// Token t's heads start at in_offset + t * in_stride (input) and out_offset + t * out_stride
// (output), in elements, so Q or K can be read straight out of a fused QKV buffer and K written
// straight into the KV cache. Entry points: main reads x_in and writes y; in_place rotates y where
// it lies, using the out_* layout (it binds only params, positions and y, as binding 2).
// One invocation per pair; head_dim and n_rot even. main's y has the KV cache's element type kv_t:
// f32, or f16 in the loaders' "f16 KV" variant (K rotated straight into an f16 cache; see kv_store.wgsl).
alias kv_t = f32;
override WG_SIZE: u32 = 64u;

struct Params {
    n: u32,
    heads: u32,
    head_dim: u32,
    n_rot: u32,
    in_stride: u32,
    in_offset: u32,
    out_stride: u32,
    out_offset: u32,
    base: f32,
    pos_scale: f32,
    neox: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> positions: array<u32>;    // (n,)
@group(0) @binding(2) var<storage, read> x_in: array<f32>;         // (n, heads, head_dim) at in_offset + t * in_stride
@group(0) @binding(3) var<storage, read_write> y: array<kv_t>;     // (n, heads, head_dim) at out_offset + t * out_stride
@group(0) @binding(2) var<storage, read_write> y_io: array<f32>;   // in_place: (n, heads, head_dim) at out_offset + t * out_stride

// (cos, sin) of theta to f32 accuracy. The builtins are not enough: WGSL allows sin/cos an absolute
// error of 2^-11 on [-pi, pi] and promises nothing beyond, and SwiftShader's are off by up to 1.9e-4
// everywhere (tests/browser/shader_precision.spec.ts), which moved the browser's logits away from
// the reference with every position. Theta is reduced to r in [-pi/4, pi/4] around k * pi/2 with
// pi/2 split in three (Cody-Waite): PIO2_HI has 8 significant bits, so k * PIO2_HI and the first
// subtraction are exact for k < 2^16, and the reduction adds ~1e-8 rad at theta ~ 300, far under
// the ulp of theta itself. Taylor series to r^9 and r^10 then err by < 1e-9 on that interval.
const TWO_OVER_PI: f32 = 0.6366197723675814;
const PIO2_HI: f32 = 1.5703125;
const PIO2_MID: f32 = 4.837512969970703125e-4;
const PIO2_LO: f32 = 7.549789948768648e-8;

fn cos_sin(theta: f32) -> vec2<f32> {
    let k = round(theta * TWO_OVER_PI);
    let r = ((theta - k * PIO2_HI) - k * PIO2_MID) - k * PIO2_LO;
    let r2 = r * r;
    let s = r + r * r2 * (-1.0 / 6.0 + r2 * (1.0 / 120.0 + r2 * (-1.0 / 5040.0 + r2 * (1.0 / 362880.0))));
    let c = 1.0 + r2 * (-0.5 + r2 * (1.0 / 24.0 + r2 * (-1.0 / 720.0 + r2 * (1.0 / 40320.0 + r2 * (-1.0 / 3628800.0)))));
    switch (u32(i32(k) & 3)) {
        case 0u: { return vec2<f32>(c, s); }
        case 1u: { return vec2<f32>(-s, c); }
        case 2u: { return vec2<f32>(-c, -s); }
        default: { return vec2<f32>(s, -c); }
    }
}

// (cos, sin) of token t's angle for frequency i < n_rot / 2.
fn rotation(t: u32, i: u32) -> vec2<f32> {
    let inv_freq = pow(params.base, -f32(2u * i) / f32(params.n_rot));
    let theta = f32(positions[t]) / params.pos_scale * inv_freq;
    return cos_sin(theta);
}

// Offsets inside a head of the two dims rotated by frequency i.
fn pair(i: u32) -> vec2<u32> {
    if (params.neox != 0u) {
        return vec2<u32>(i, i + params.n_rot / 2u);
    }
    return vec2<u32>(2u * i, 2u * i + 1u);
}

fn rotate(a: f32, b: f32, cs: vec2<f32>) -> vec2<f32> {
    return vec2<f32>(a * cs.x - b * cs.y, b * cs.x + a * cs.y);
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let half_dim = params.head_dim / 2u;
    let k = wid.x * WG_SIZE + lid.x; // pair index within the token: head * half_dim + i
    let t = wid.y;
    if (k >= params.heads * half_dim) {
        return;
    }
    let head = k / half_dim;
    let i = k % half_dim;
    let src = params.in_offset + t * params.in_stride + head * params.head_dim;
    let dst = params.out_offset + t * params.out_stride + head * params.head_dim;
    if (i < params.n_rot / 2u) {
        let p = pair(i);
        let r = rotate(x_in[src + p.x], x_in[src + p.y], rotation(t, i));
        y[dst + p.x] = kv_t(r.x);
        y[dst + p.y] = kv_t(r.y);
    } else {
        let c = params.n_rot + 2u * (i - params.n_rot / 2u);
        y[dst + c] = kv_t(x_in[src + c]);
        y[dst + c + 1u] = kv_t(x_in[src + c + 1u]);
    }
}

@compute @workgroup_size(WG_SIZE)
fn in_place(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let half_rot = params.n_rot / 2u;
    let k = wid.x * WG_SIZE + lid.x;
    let t = wid.y;
    if (k >= params.heads * (params.head_dim / 2u)) {
        return;
    }
    let head = k / (params.head_dim / 2u);
    let i = k % (params.head_dim / 2u);
    if (i >= half_rot) {
        return;
    }
    let base = params.out_offset + t * params.out_stride + head * params.head_dim;
    let p = pair(i);
    let r = rotate(y_io[base + p.x], y_io[base + p.y], rotation(t, i));
    y_io[base + p.x] = r.x;
    y_io[base + p.y] = r.y;
}
