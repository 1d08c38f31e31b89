// softmax: y = exp(x - max(x)) / sum(exp(x - max(x))) over each row   ref: reference.softmax   grid: (gx, gy, 1), gx * gy >= rows, row = wid.y * gx + wid.x
// One workgroup per row, three passes over the row (max, sum, write); WG_SIZE a power of two.
override WG_SIZE: u32 = 256u;

struct Params {
    rows: u32,
    cols: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;       // (rows, cols)
@group(0) @binding(2) var<storage, read_write> y: array<f32>; // (rows, cols)

var<workgroup> partial: array<f32, WG_SIZE>;

fn workgroup_max(v: f32, lane: u32) -> f32 {
    partial[lane] = v;
    workgroupBarrier();
    for (var s = WG_SIZE / 2u; s > 0u; s >>= 1u) {
        if (lane < s) {
            partial[lane] = max(partial[lane], partial[lane + s]);
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier(); // partial is reused by the next reduction
    return total;
}

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
    let base = row * params.cols;
    // Start from the lowest f32, not 0: a row of large negative logits must find its own max.
    var m = -3.4028234663852886e38;
    for (var c = lid.x; c < params.cols; c += WG_SIZE) {
        m = max(m, x[base + c]);
    }
    let row_max = workgroup_max(m, lid.x);
    var s = 0.0;
    for (var c = lid.x; c < params.cols; c += WG_SIZE) {
        s += exp(x[base + c] - row_max);
    }
    let total = workgroup_sum(s, lid.x);
    for (var c = lid.x; c < params.cols; c += WG_SIZE) {
        y[base + c] = exp(x[base + c] - row_max) / total;
    }
}
