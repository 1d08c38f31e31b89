// rms_norm: y = x / sqrt(mean(x^2) + eps) * w   ref: reference.rms_norm   grid: (gx, gy, 1), gx * gy >= rows, row = wid.y * gx + wid.x
// One workgroup per row; WG_SIZE must be a power of two (tree reduction).
override WG_SIZE: u32 = 8u; // 8 (one llvmpipe SIMD vector) keeps the reduction's barriers cheap; a GPU host may pass 256

struct Params {
    rows: u32,
    dim: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;       // (rows, dim)
@group(0) @binding(2) var<storage, read> w: array<f32>;       // (dim,)
@group(0) @binding(3) var<storage, read_write> y: array<f32>; // (rows, dim)

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
    workgroupBarrier(); // partial is reused by the next reduction
    return total;
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= params.rows) {
        return;
    }
    let base = row * params.dim;
    var sq = 0.0;
    for (var c = lid.x; c < params.dim; c += WG_SIZE) {
        let v = x[base + c];
        sq += v * v;
    }
    let r = sqrt(workgroup_sum(sq, lid.x) / f32(params.dim) + params.eps);
    for (var c = lid.x; c < params.dim; c += WG_SIZE) {
        y[base + c] = x[base + c] / r * w[c];
    }
}
