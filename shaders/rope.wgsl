// rope: rotate dim pairs (a, b) of each head's first n_rot dims by theta = pos / pos_scale * base^(-2i / n_rot) / factors[i]: m (a cos - b sin, b cos + a sin) with m = mscale   ref: reference.rope   grid: (ceil(heads * head_dim / 2 / WG_SIZE), n, 1)
// factors: llama-3's rope_freqs or LongRoPE's long/short factors (n_rot / 2 divisors of the
// frequencies), ones for every other model; each entry point binds them right after its own buffers
// (main 4, qkv 6). mscale: LongRoPE's attention factor (llama.cpp's rope attn_factor), 1 otherwise.
// neox = 1 pairs dims (i, i + n_rot / 2), otherwise (2i, 2i + 1); dims from n_rot on pass through.
// Token t's heads start at in_offset + t * in_stride (input) and out_offset + t * out_stride
// (output), in elements, so Q or K can be read straight out of a fused QKV buffer and K written
// straight into the KV cache. Entry points: main reads x_in and writes y; qkv does a layer's whole
// step after a Q/K/V matmul in one launch (its own Params, qkv_params, below).
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
    mscale: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> positions: array<u32>;    // (n,)
@group(0) @binding(2) var<storage, read> x_in: array<f32>;         // (n, heads, head_dim) at in_offset + t * in_stride
@group(0) @binding(3) var<storage, read_write> y: array<kv_t>;     // (n, heads, head_dim) at out_offset + t * out_stride
@group(0) @binding(4) var<storage, read> factors_main: array<f32>;     // main: (n_rot / 2,)

// qkv: the rows of one Q/K/V matmul's output (x_in: (n, q_dim + kv_dim + v_dim), each row Q, K, V)
// in one launch: Q rotated into q_out, K rotated into the K cache (y) and V copied into the V cache
// (v_cache) at row pos0 — what main (twice) and kv_store.wgsl do in three. grid:
// (ceil((n_head * head_dim / 2 + n_head_kv * head_dim / 2 + v_dim) / WG_SIZE), n, 1).
struct QkvParams {
    n_head: u32,
    n_head_kv: u32,
    head_dim: u32,
    v_dim: u32,         // n_head_kv * head_dim_v
    n_rot: u32,
    row: u32,           // x_in's row length, q_dim + kv_dim + v_dim
    cache_offset: u32,  // pos0 * kv_dim: the step's first row in the K cache
    v_cache_offset: u32, // pos0 * v_dim
    base: f32,
    pos_scale: f32,
    neox: u32,
    mscale: f32,
}
@group(0) @binding(0) var<uniform> qkv_params: QkvParams;
@group(0) @binding(4) var<storage, read_write> q_out: array<f32>;   // qkv: (n, n_head * head_dim)
@group(0) @binding(5) var<storage, read_write> v_cache: array<kv_t>; // qkv: (max_tokens, v_dim), the step's rows at v_cache_offset
@group(0) @binding(6) var<storage, read> factors_qkv: array<f32>;      // qkv: (n_rot / 2,)

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

// (cos, sin) of token t's angle for frequency i < n_rot / 2, whose divisor is `factor`, times mscale.
fn rotation_of(t: u32, i: u32, base: f32, n_rot: u32, pos_scale: f32, factor: f32, mscale: f32) -> vec2<f32> {
    let inv_freq = pow(base, -f32(2u * i) / f32(n_rot)) / factor;
    let theta = f32(positions[t]) / pos_scale * inv_freq;
    return cos_sin(theta) * mscale;
}

fn rotation(t: u32, i: u32, factor: f32) -> vec2<f32> {
    return rotation_of(t, i, params.base, params.n_rot, params.pos_scale, factor, params.mscale);
}

// Offsets inside a head of the two dims rotated by frequency i.
fn pair_of(i: u32, n_rot: u32, neox: u32) -> vec2<u32> {
    if (neox != 0u) {
        return vec2<u32>(i, i + n_rot / 2u);
    }
    return vec2<u32>(2u * i, 2u * i + 1u);
}

fn pair(i: u32) -> vec2<u32> {
    return pair_of(i, params.n_rot, params.neox);
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
        let r = rotate(x_in[src + p.x], x_in[src + p.y], rotation(t, i, factors_main[i]));
        y[dst + p.x] = kv_t(r.x);
        y[dst + p.y] = kv_t(r.y);
    } else {
        let c = params.n_rot + 2u * (i - params.n_rot / 2u);
        y[dst + c] = kv_t(x_in[src + c]);
        y[dst + c + 1u] = kv_t(x_in[src + c + 1u]);
    }
}

@compute @workgroup_size(WG_SIZE)
fn qkv(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let p = qkv_params;
    let half_dim = p.head_dim / 2u;
    let q_pairs = p.n_head * half_dim;
    let k_pairs = p.n_head_kv * half_dim;
    let j = wid.x * WG_SIZE + lid.x; // Q pairs, then K pairs, then V elements of token t
    let t = wid.y;
    let q_dim = p.n_head * p.head_dim;
    let kv_dim = p.n_head_kv * p.head_dim;
    let row = t * p.row;
    if (j >= q_pairs + k_pairs) {
        let c = j - q_pairs - k_pairs;
        if (c < p.v_dim) {
            v_cache[p.v_cache_offset + t * p.v_dim + c] = kv_t(x_in[row + q_dim + kv_dim + c]);
        }
        return;
    }
    let is_k = j >= q_pairs;
    let k = select(j, j - q_pairs, is_k);
    let head = k / half_dim;
    let i = k % half_dim;
    let src = row + select(0u, q_dim, is_k) + head * p.head_dim;
    let dst = head * p.head_dim + select(t * q_dim, p.cache_offset + t * kv_dim, is_k);
    var a: vec2<u32>; // the two dims this invocation writes, and their values
    var r: vec2<f32>;
    if (i < p.n_rot / 2u) {
        a = pair_of(i, p.n_rot, p.neox);
        r = rotate(x_in[src + a.x], x_in[src + a.y], rotation_of(t, i, p.base, p.n_rot, p.pos_scale, factors_qkv[i], p.mscale));
    } else {
        let c = p.n_rot + 2u * (i - p.n_rot / 2u);
        a = vec2<u32>(c, c + 1u);
        r = vec2<f32>(x_in[src + c], x_in[src + c + 1u]);
    }
    if (is_k) {
        y[dst + a.x] = kv_t(r.x);
        y[dst + a.y] = kv_t(r.y);
    } else {
        q_out[dst + a.x] = r.x;
        q_out[dst + a.y] = r.y;
    }
}
