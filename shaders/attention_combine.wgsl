// attention_combine: out[h] = sum_s w_s o_s / sum_s w_s l_s,  w_s = exp(m_s - max_s m_s)   ref: reference.attention (decode, its keys split)   grid: (n_head, 1, 1)
// The second launch of the gpu family's decode attention: attention.wgsl's decode_split leaves, per
// split s of the query's keys and head h, the split's maximum score m_s, its sum of exp(score - m_s)
// l_s and its unnormalised output o_s = sum exp(score - m_s) v; rescaled to the overall maximum they
// add up to the softmax over all the keys. A split without keys has m_s = LOWEST, l_s = 0, o_s = 0.
override WG_SIZE: u32 = 64u;
const LOWEST: f32 = -3.4028234663852886e38;

struct Params {
    n_head: u32,
    head_dim_v: u32,
    n_splits: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> part: array<f32>;      // (n_splits, n_head, 2 + head_dim_v): m_s, l_s, o_s
@group(0) @binding(2) var<storage, read_write> out: array<f32>; // (n_head, head_dim_v)

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let dv = params.head_dim_v;
    let row = dv + 2u;
    var m = LOWEST;
    for (var s = 0u; s < params.n_splits; s++) {
        m = max(m, part[(s * params.n_head + h) * row]);
    }
    var total = 0.0;
    for (var s = 0u; s < params.n_splits; s++) {
        let o = (s * params.n_head + h) * row;
        total += exp(part[o] - m) * part[o + 1u];
    }
    for (var c = lid; c < dv; c += WG_SIZE) {
        var acc = 0.0;
        for (var s = 0u; s < params.n_splits; s++) {
            let o = (s * params.n_head + h) * row;
            acc += exp(part[o] - m) * part[o + 2u + c];
        }
        out[h * dv + c] = acc / total;
    }
}
