// layer_norm: y = (x - mean(x)) / sqrt(var(x) + eps) * w + b   ref: reference.layer_norm   grid: (gx, gy, 1), gx * gy >= rows, row = wid.y * gx + wid.x
// One workgroup per row; two passes: the mean, then sums of d = x - mean and d^2. The first sum
// corrects the rounding error of the mean (corrected two-pass algorithm), which matters when
// |mean| >> std, e.g. x = 3 + 0.01 * noise.
// WG_SIZE must be a power of two (tree reduction). A norm without bias binds zeros as b.
override WG_SIZE: u32 = 8u; // 8 (one llvmpipe SIMD vector) keeps the reductions' barriers cheap; a GPU host may pass 256

struct Params {
    rows: u32,
    dim: u32,
    eps: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;       // (rows, dim)
@group(0) @binding(2) var<storage, read> w: array<f32>;       // (dim,)
@group(0) @binding(3) var<storage, read> b: array<f32>;       // (dim,)
@group(0) @binding(4) var<storage, read_write> y: array<f32>; // (rows, dim)

var<workgroup> partial: array<vec2<f32>, WG_SIZE>;

fn workgroup_sum(v: vec2<f32>, lane: u32) -> vec2<f32> {
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
    let n = f32(params.dim);
    var s = 0.0;
    for (var c = lid.x; c < params.dim; c += WG_SIZE) {
        s += x[base + c];
    }
    let mean0 = workgroup_sum(vec2<f32>(s, 0.0), lid.x).x / n;
    var sums = vec2<f32>(0.0, 0.0); // (sum d, sum d^2)
    for (var c = lid.x; c < params.dim; c += WG_SIZE) {
        let d = x[base + c] - mean0;
        sums += vec2<f32>(d, d * d);
    }
    let total = workgroup_sum(sums, lid.x) / n;
    let r = sqrt(max(total.y - total.x * total.x, 0.0) + params.eps);
    for (var c = lid.x; c < params.dim; c += WG_SIZE) {
        // x - mean0 is exact (Sterbenz) when the row sits far from zero; then the small correction.
        y[base + c] = ((x[base + c] - mean0) - total.x) / r * w[c] + b[c];
    }
}
