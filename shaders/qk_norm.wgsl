// qk_norm: per-head RMSNorm of Q and K in stacked Q/K/V rows, in place: for token t < n and head j < n_head + n_head_kv, v = qkv[t * stride + j * dim ..][: dim] becomes v / sqrt(mean(v^2) + eps) * w_j, w_j = q_w for j < n_head, else k_w   ref: reference.rms_norm over each head   grid: (gx, gy, 1), gx * gy >= rows = n * (n_head + n_head_kv), row = wid.y * gx + wid.x
// Gemma-3's (and Qwen3's) q/k norms after a layer's one Q/K/V matmul, where the layer's Q, K and V
// are stacked into one weight: one launch for both norms instead of three matmuls and two norm
// launches. The arithmetic is rms_norm.wgsl's (one workgroup a head row, the same tree, the same
// formula), so the values are those of the separate path bit for bit. WG_SIZE a power of two.
override WG_SIZE: u32 = 8u; // as rms_norm.wgsl: 8 for llvmpipe, a GPU host may pass 256

struct Params {
    rows: u32,   // n * heads
    dim: u32,    // head_dim
    eps: f32,
    n_head: u32, // Q heads: the first n_head of a token's heads
    heads: u32,  // n_head + n_head_kv
    stride: u32, // a token's row in qkv: Q, K and V
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> qkv: array<f32>; // (n, stride)
@group(0) @binding(2) var<storage, read> q_w: array<f32>;       // (dim,)
@group(0) @binding(3) var<storage, read> k_w: array<f32>;       // (dim,)

var<workgroup> partial: array<f32, WG_SIZE>;

fn workgroup_sum(v: f32, lane: u32) -> f32 {
    partial[lane] = v;
    workgroupBarrier();
    for (var s = WG_SIZE / 2u; s > 0u; s >>= 1u) {
        if (lane < s) {
            partial[lane] += partial[lane + s];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= params.rows) {
        return;
    }
    let j = row % params.heads;
    let base = (row / params.heads) * params.stride + j * params.dim;
    var sq = 0.0;
    for (var c = lid.x; c < params.dim; c += WG_SIZE) {
        let v = qkv[base + c];
        sq += v * v;
    }
    let r = sqrt(workgroup_sum(sq, lid.x) / f32(params.dim) + params.eps);
    for (var c = lid.x; c < params.dim; c += WG_SIZE) {
        let w = select(k_w[c], q_w[c], j < params.n_head);
        qkv[base + c] = qkv[base + c] / r * w;
    }
}
