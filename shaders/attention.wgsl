// attention: out[i, h] = sum_j softmax_j(s_ij) v[j, h / g],  s_ij = softcap(scale * (q[i, h] . k[j, h / g] + slope_h * j)) over keys j <= q_pos[i] (and q_pos[i] - j < window), g = n_head / n_head_kv   ref: reference.attention with k_pos = cache index   grid: (n_head, n, 1)
// Causal attention against the KV cache for prefill (n queries) and decode (n = 1). Cache row j
// holds position j; the first n_kv rows are valid (this step's rows included). One workgroup per
// (head, query) walks its visible keys in tiles of 4 * WG_SIZE with an online softmax (running max and
// sum, accumulator rescaled when the max grows). ALiBi slopes are ggml's, from alibi_max_bias
// (0 = off); softcap 0 = off; window 0 = off. head_dim, head_dim_v <= MAX_HEAD_DIM (the host checks).
// kv_t is the cache's element type: f32, or f16 in the loaders' "f16 KV" variant (see kv_store.wgsl);
// scores and sums are f32 either way.
alias kv_t = f32;
override WG_SIZE: u32 = 8u; // keys per tile, a power of two; 8 (one llvmpipe SIMD vector) keeps its barriers cheap, a GPU host may pass 64
override TILE_KEYS: u32 = 4u * WG_SIZE; // keys per tile, four per invocation (derived from WG_SIZE, not for hosts to set)
const MAX_HEAD_DIM: u32 = 256u;
const LOWEST: f32 = -3.4028234663852886e38;

struct Params {
    n_head: u32,
    n_head_kv: u32,
    head_dim: u32,
    head_dim_v: u32,
    n_kv: u32,
    window: u32,
    scale: f32,
    softcap: f32,
    alibi_max_bias: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;           // (n, n_head, head_dim)
@group(0) @binding(2) var<storage, read> k_cache: array<kv_t>;    // (max_tokens, n_head_kv, head_dim)
@group(0) @binding(3) var<storage, read> v_cache: array<kv_t>;    // (max_tokens, n_head_kv, head_dim_v)
@group(0) @binding(4) var<storage, read> q_pos: array<u32>;       // (n,)
@group(0) @binding(5) var<storage, read_write> out: array<f32>;   // (n, n_head, head_dim_v)

var<workgroup> q_s: array<f32, MAX_HEAD_DIM>;
var<workgroup> acc: array<f32, MAX_HEAD_DIM>; // output accumulator; dim c belongs to invocation c % WG_SIZE
var<workgroup> p_s: array<f32, TILE_KEYS>;    // this tile's softmax weights
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

// tanh to f32 accuracy (see softcap.wgsl): WGSL promises only the accuracy of sinh / cosh.
fn tanh_accurate(z: f32) -> f32 {
    let a = abs(z);
    if (a < 0.4) {
        let z2 = z * z;
        let p = -1.0 / 3.0 + z2 * (2.0 / 15.0 + z2 * (-17.0 / 315.0 + z2 * (62.0 / 2835.0 + z2 * (-1382.0 / 155925.0 + z2 * (21844.0 / 6081075.0)))));
        return z + z * z2 * p;
    }
    return sign(z) * (1.0 - 2.0 / (exp(2.0 * a) + 1.0));
}

// ggml_soft_max_ext's slope for head h: m0^(h+1) for the first 2^floor(log2 H) heads, then odd powers of m1.
fn alibi_slope(h: u32) -> f32 {
    if (params.alibi_max_bias == 0.0) {
        return 0.0;
    }
    let n_log2 = 1u << firstLeadingBit(params.n_head);
    let step = params.alibi_max_bias / f32(n_log2);
    if (h < n_log2) {
        return exp2(-step * f32(h + 1u));
    }
    return exp2(-0.5 * step * f32(2u * (h - n_log2) + 1u));
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let h = wid.x;
    let i = wid.y;
    let lane = lid.x;
    let kvh = h / (params.n_head / params.n_head_kv);
    let d = params.head_dim;
    let dv = params.head_dim_v;
    let kv_row = params.n_head_kv * d;
    let v_row = params.n_head_kv * dv;

    for (var c = lane; c < d; c += WG_SIZE) {
        q_s[c] = q[(i * params.n_head + h) * d + c];
    }
    for (var c = lane; c < dv; c += WG_SIZE) {
        acc[c] = 0.0;
    }
    workgroupBarrier();

    let pos = q_pos[i];
    let end = min(pos + 1u, params.n_kv);
    var start = 0u;
    if (params.window > 0u && pos + 1u > params.window) {
        start = pos + 1u - params.window;
    }
    let slope = alibi_slope(h);
    var run_max = LOWEST;
    var run_sum = 0.0;
    for (var t0 = start; t0 < end; t0 += TILE_KEYS) {
        // keys t0 + lane + WG_SIZE * e, e < 4: each q_s load serves four keys; keys past the end
        // read the last valid row and get p = 0
        let j = vec4<u32>(t0 + lane) + WG_SIZE * vec4<u32>(0u, 1u, 2u, 3u);
        let valid = j < vec4<u32>(end);
        let k_base = min(j, vec4<u32>(end - 1u)) * kv_row + kvh * d;
        var qk = vec4<f32>(0.0);
        for (var c = 0u; c < d; c++) {
            let kc = vec4<f32>(f32(k_cache[k_base.x + c]), f32(k_cache[k_base.y + c]), f32(k_cache[k_base.z + c]), f32(k_cache[k_base.w + c]));
            qk = fma(vec4<f32>(q_s[c]), kc, qk);
        }
        var s = (qk + slope * vec4<f32>(j)) * params.scale;
        if (params.softcap > 0.0) {
            s = params.softcap * vec4<f32>(tanh_accurate(s.x / params.softcap), tanh_accurate(s.y / params.softcap),
                                           tanh_accurate(s.z / params.softcap), tanh_accurate(s.w / params.softcap));
        }
        s = select(vec4<f32>(LOWEST), s, valid);
        let new_max = max(run_max, workgroup_max(max(max(s.x, s.y), max(s.z, s.w)), lane));
        let alpha = exp(run_max - new_max);
        let p = select(vec4<f32>(0.0), exp(s - new_max), valid);
        p_s[lane] = p.x;
        p_s[lane + WG_SIZE] = p.y;
        p_s[lane + 2u * WG_SIZE] = p.z;
        p_s[lane + 3u * WG_SIZE] = p.w;
        run_sum = run_sum * alpha + workgroup_sum(dot(p, vec4<f32>(1.0)), lane); // its barriers also publish p_s
        run_max = new_max;
        let tile = min(TILE_KEYS, end - t0);
        // dims c0 + WG_SIZE * e, e < 4 (all this invocation's, as in acc's layout): each p_s load
        // serves four dims; dims past dv read the last one and are not stored
        for (var c0 = lane; c0 < dv; c0 += 4u * WG_SIZE) {
            let c = vec4<u32>(c0) + WG_SIZE * vec4<u32>(0u, 1u, 2u, 3u);
            let cv = min(c, vec4<u32>(dv - 1u));
            var a = vec4<f32>(0.0);
            for (var e = 0u; e < 4u; e++) {
                if (c[e] < dv) {
                    a[e] = acc[c[e]] * alpha;
                }
            }
            for (var jj = 0u; jj < tile; jj++) {
                let base = (t0 + jj) * v_row + kvh * dv;
                a = fma(vec4<f32>(p_s[jj]), vec4<f32>(f32(v_cache[base + cv.x]), f32(v_cache[base + cv.y]), f32(v_cache[base + cv.z]), f32(v_cache[base + cv.w])), a);
            }
            for (var e = 0u; e < 4u; e++) {
                if (c[e] < dv) {
                    acc[c[e]] = a[e];
                }
            }
        }
        workgroupBarrier(); // p_s is rewritten by the next tile
    }
    for (var c = lane; c < dv; c += WG_SIZE) {
        out[(i * params.n_head + h) * dv + c] = acc[c] / run_sum;
    }
}
