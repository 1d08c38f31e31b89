// attention: out[i, h] = sum_j softmax_j(s_ij) v[j, h / g],  s_ij = softcap(scale * (q[i, h] . k[j, h / g] + slope_h * j)) over keys j <= q_pos[i] (and q_pos[i] - j < window), g = n_head / n_head_kv   ref: reference.attention with k_pos = cache index   grid: main (n_head, ceil(n / (4 * WG_SIZE)), 1); prefill_tiled (n_head, ceil(n / Q_TILE), 1); decode_split (n_head_kv * ceil(g / G_MAX), n_splits, 1) then attention_combine.wgsl
// Causal attention against the KV cache for prefill (n queries) and decode (n = 1). Cache row j
// holds position j; the first n_kv rows are valid (this step's rows included). Two kernel families
// (engine kernels="cpu" | "gpu") share the Params, bindings and helpers; the gpu family's entry points
// prefill_tiled and decode_split follow `main` below, with their own notes. `main` is the cpu family's,
// written for llvmpipe, where a workgroup's invocations are the lanes of one SIMD vector, each load in a loop
// costs a scalar load per lane and barriers are dear: each invocation keeps a block of scores in
// registers so that every value it loads feeds several FMAs, with an online softmax (running max
// and sum, accumulator rescaled when the max grows) and no barrier inside the key loop.
// - n > 1 (prefill): workgroup (h, b) takes queries 4 * WG_SIZE * b ...; each invocation owns four
//   consecutive queries and walks their keys itself, 8 keys x 4 queries of scores at a time.
// - n = 1 (decode): workgroup (h, 0) splits the query's keys over its invocations in runs of 8;
//   their maxima, sums and accumulators are combined through workgroup memory at the end.
// ALiBi slopes are ggml's, from alibi_max_bias (0 = off); softcap 0 = off; window 0 = off.
// head_dim, head_dim_v <= MAX_HEAD_DIM (the host checks). kv_t is the cache's element type: f32, or
// f16 in the loaders' "f16 KV" variant (see kv_store.wgsl); scores and sums are f32 either way.
alias kv_t = f32;
override WG_SIZE: u32 = 8u; // invocations; 8 is one llvmpipe SIMD vector (decode's combine holds WG_SIZE * WG_SIZE floats)
const MAX_HEAD_DIM: u32 = 256u;
const LOWEST: f32 = -3.4028234663852886e38;
const KEYS: u32 = 8u; // keys scored per step (two vec4s)

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
    n: u32, // queries
    direct: u32, // decode_split only: 1 when its keys are one split, out then (n_head, head_dim_v), the final output
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;           // (n, n_head, head_dim)
@group(0) @binding(2) var<storage, read> k_cache: array<kv_t>;    // (max_tokens, n_head_kv, head_dim)
@group(0) @binding(3) var<storage, read> v_cache: array<kv_t>;    // (max_tokens, n_head_kv, head_dim_v)
@group(0) @binding(4) var<storage, read> q_pos: array<u32>;       // (n,)
@group(0) @binding(5) var<storage, read_write> out: array<f32>;   // (n, n_head, head_dim_v); decode_split: its partials (n_splits, n_head, 2 + head_dim_v)

var<workgroup> part_acc: array<f32, WG_SIZE * WG_SIZE>; // decode: the invocations' rescaled accumulators, WG_SIZE dims at a time
var<workgroup> part_max: array<f32, WG_SIZE>;
var<workgroup> part_sum: array<f32, WG_SIZE>;

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

// Raw scores q . k plus ALiBi, scaled and soft-capped, for four keys j.
fn finish_scores(qk: vec4<f32>, j: vec4<u32>, slope: f32) -> vec4<f32> {
    var s = (qk + slope * vec4<f32>(j)) * params.scale;
    if (params.softcap > 0.0) {
        let c = params.softcap;
        s = c * vec4<f32>(tanh_accurate(s.x / c), tanh_accurate(s.y / c), tanh_accurate(s.z / c), tanh_accurate(s.w / c));
    }
    return s;
}

// First visible key of a query at position pos.
fn first_key(pos: u32) -> u32 {
    if (params.window > 0u && pos + 1u > params.window) {
        return pos + 1u - params.window;
    }
    return 0u;
}

fn prefill(h: u32, block: u32, lane: u32) {
    let i0 = (block * WG_SIZE + lane) * 4u;
    if (i0 >= params.n) {
        return;
    }
    let kvh = h / (params.n_head / params.n_head_kv);
    let d = params.head_dim;
    let dv = params.head_dim_v;
    let kv_row = params.n_head_kv * d;
    let v_row = params.n_head_kv * dv;
    // rows r < 4: query i0 + r; rows past n repeat the last query and are not stored
    let last = params.n - 1u - i0;
    let rows = vec4<u32>(i0) + min(vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last));
    let pos = vec4<u32>(q_pos[rows.x], q_pos[rows.y], q_pos[rows.z], q_pos[rows.w]);
    let end = min(pos + 1u, vec4<u32>(params.n_kv)); // per row: keys [start, end)
    let start = vec4<u32>(first_key(pos.x), first_key(pos.y), first_key(pos.z), first_key(pos.w));
    let lo = min(min(start.x, start.y), min(start.z, start.w));
    let hi = max(max(end.x, end.y), max(end.z, end.w));
    let q_base = (rows * params.n_head + h) * d;
    let slope = alibi_slope(h);

    var acc: array<vec4<f32>, MAX_HEAD_DIM>; // acc[c][r]: row r's output dim c, unnormalised
    for (var c = 0u; c < dv; c++) {
        acc[c] = vec4<f32>(0.0);
    }
    var run_max = vec4<f32>(LOWEST);
    var run_sum = vec4<f32>(0.0);
    for (var t0 = lo; t0 < hi; t0 += KEYS) {
        // keys ja (t0 .. t0 + 3) and jb (t0 + 4 .. t0 + 7); keys past hi read row hi - 1 and get p = 0
        let ja = vec4<u32>(t0) + vec4<u32>(0u, 1u, 2u, 3u);
        let jb = ja + 4u;
        let ka = min(ja, vec4<u32>(hi - 1u)) * kv_row + kvh * d;
        let kb = min(jb, vec4<u32>(hi - 1u)) * kv_row + kvh * d;
        var sa: array<vec4<f32>, 4>; // sa[r]: row r's scores for ja
        var sb: array<vec4<f32>, 4>;
        for (var r = 0u; r < 4u; r++) {
            sa[r] = vec4<f32>(0.0);
            sb[r] = vec4<f32>(0.0);
        }
        for (var c = 0u; c < d; c++) {
            let kca = vec4<f32>(f32(k_cache[ka.x + c]), f32(k_cache[ka.y + c]), f32(k_cache[ka.z + c]), f32(k_cache[ka.w + c]));
            let kcb = vec4<f32>(f32(k_cache[kb.x + c]), f32(k_cache[kb.y + c]), f32(k_cache[kb.z + c]), f32(k_cache[kb.w + c]));
            for (var r = 0u; r < 4u; r++) {
                let qc = vec4<f32>(q[q_base[r] + c]);
                sa[r] = fma(qc, kca, sa[r]);
                sb[r] = fma(qc, kcb, sb[r]);
            }
        }
        var alpha: vec4<f32>;
        for (var r = 0u; r < 4u; r++) {
            let va = (ja >= vec4<u32>(start[r])) & (ja < vec4<u32>(end[r]));
            let vb = (jb >= vec4<u32>(start[r])) & (jb < vec4<u32>(end[r]));
            let s_a = select(vec4<f32>(LOWEST), finish_scores(sa[r], ja, slope), va);
            let s_b = select(vec4<f32>(LOWEST), finish_scores(sb[r], jb, slope), vb);
            let m = max(s_a, s_b);
            let new_max = max(run_max[r], max(max(m.x, m.y), max(m.z, m.w)));
            alpha[r] = exp(run_max[r] - new_max);
            sa[r] = select(vec4<f32>(0.0), exp(s_a - new_max), va);
            sb[r] = select(vec4<f32>(0.0), exp(s_b - new_max), vb);
            run_sum[r] = run_sum[r] * alpha[r] + dot(sa[r] + sb[r], vec4<f32>(1.0));
            run_max[r] = new_max;
        }
        let va = min(ja, vec4<u32>(hi - 1u)) * v_row + kvh * dv;
        let vb = min(jb, vec4<u32>(hi - 1u)) * v_row + kvh * dv;
        for (var c = 0u; c < dv; c++) {
            let vca = vec4<f32>(f32(v_cache[va.x + c]), f32(v_cache[va.y + c]), f32(v_cache[va.z + c]), f32(v_cache[va.w + c]));
            let vcb = vec4<f32>(f32(v_cache[vb.x + c]), f32(v_cache[vb.y + c]), f32(v_cache[vb.z + c]), f32(v_cache[vb.w + c]));
            var a = acc[c] * alpha;
            for (var r = 0u; r < 4u; r++) {
                a[r] += dot(sa[r], vca) + dot(sb[r], vcb);
            }
            acc[c] = a;
        }
    }
    let n_rows = min(4u, params.n - i0);
    for (var r = 0u; r < n_rows; r++) {
        let o = ((i0 + r) * params.n_head + h) * dv;
        for (var c = 0u; c < dv; c++) {
            out[o + c] = acc[c][r] / run_sum[r];
        }
    }
}

fn decode(h: u32, lane: u32) {
    let kvh = h / (params.n_head / params.n_head_kv);
    let d = params.head_dim;
    let dv = params.head_dim_v;
    let kv_row = params.n_head_kv * d;
    let v_row = params.n_head_kv * dv;
    let pos = q_pos[0];
    let end = min(pos + 1u, params.n_kv);
    let start = first_key(pos);
    let q_base = h * d;
    let slope = alibi_slope(h);

    var acc: array<f32, MAX_HEAD_DIM>;
    for (var c = 0u; c < dv; c++) {
        acc[c] = 0.0;
    }
    var run_max = LOWEST;
    var run_sum = 0.0;
    // this invocation's keys: runs of KEYS at start + KEYS * (lane + WG_SIZE * t)
    for (var t0 = start + KEYS * lane; t0 < end; t0 += KEYS * WG_SIZE) {
        let ja = vec4<u32>(t0) + vec4<u32>(0u, 1u, 2u, 3u);
        let jb = ja + 4u;
        let ka = min(ja, vec4<u32>(end - 1u)) * kv_row + kvh * d;
        let kb = min(jb, vec4<u32>(end - 1u)) * kv_row + kvh * d;
        var sa = vec4<f32>(0.0);
        var sb = vec4<f32>(0.0);
        for (var c = 0u; c < d; c++) {
            let qc = vec4<f32>(q[q_base + c]);
            sa = fma(qc, vec4<f32>(f32(k_cache[ka.x + c]), f32(k_cache[ka.y + c]), f32(k_cache[ka.z + c]), f32(k_cache[ka.w + c])), sa);
            sb = fma(qc, vec4<f32>(f32(k_cache[kb.x + c]), f32(k_cache[kb.y + c]), f32(k_cache[kb.z + c]), f32(k_cache[kb.w + c])), sb);
        }
        let valid_a = ja < vec4<u32>(end);
        let valid_b = jb < vec4<u32>(end);
        let s_a = select(vec4<f32>(LOWEST), finish_scores(sa, ja, slope), valid_a);
        let s_b = select(vec4<f32>(LOWEST), finish_scores(sb, jb, slope), valid_b);
        let m = max(s_a, s_b);
        let new_max = max(run_max, max(max(m.x, m.y), max(m.z, m.w)));
        let alpha = exp(run_max - new_max);
        let pa = select(vec4<f32>(0.0), exp(s_a - new_max), valid_a);
        let pb = select(vec4<f32>(0.0), exp(s_b - new_max), valid_b);
        run_sum = run_sum * alpha + dot(pa + pb, vec4<f32>(1.0));
        run_max = new_max;
        let va = min(ja, vec4<u32>(end - 1u)) * v_row + kvh * dv;
        let vb = min(jb, vec4<u32>(end - 1u)) * v_row + kvh * dv;
        for (var c = 0u; c < dv; c++) {
            let vca = vec4<f32>(f32(v_cache[va.x + c]), f32(v_cache[va.y + c]), f32(v_cache[va.z + c]), f32(v_cache[va.w + c]));
            let vcb = vec4<f32>(f32(v_cache[vb.x + c]), f32(v_cache[vb.y + c]), f32(v_cache[vb.z + c]), f32(v_cache[vb.w + c]));
            acc[c] = acc[c] * alpha + dot(pa, vca) + dot(pb, vcb);
        }
    }
    // combine: every invocation rescales to the workgroup's max (w = 0 for an invocation that had no
    // keys); then, WG_SIZE output dims at a time, the invocations leave their accumulators in
    // workgroup memory and invocation lane sums dim c0 + lane. The staging is WG_SIZE^2 floats, not
    // WG_SIZE * head_dim_v: SwiftShader's compile time grows with a workgroup array's size (Chromium
    // took ~1 s to compile this entry with a 2048-float one, ~0.02 s for a trivial kernel with 16).
    part_max[lane] = run_max;
    part_sum[lane] = run_sum;
    workgroupBarrier();
    var total_max = LOWEST;
    for (var l = 0u; l < WG_SIZE; l++) {
        total_max = max(total_max, part_max[l]);
    }
    var total_sum = 0.0;
    for (var l = 0u; l < WG_SIZE; l++) {
        total_sum += part_sum[l] * exp(part_max[l] - total_max);
    }
    let w = exp(run_max - total_max);
    for (var c0 = 0u; c0 < dv; c0 += WG_SIZE) {
        for (var j = 0u; j < WG_SIZE; j++) {
            part_acc[lane * WG_SIZE + j] = select(0.0, acc[min(c0 + j, MAX_HEAD_DIM - 1u)] * w, c0 + j < dv);
        }
        workgroupBarrier();
        let c = c0 + lane;
        if (c < dv) {
            var o = 0.0;
            for (var l = 0u; l < WG_SIZE; l++) {
                o += part_acc[l * WG_SIZE + lane];
            }
            out[h * dv + c] = o / total_sum;
        }
        workgroupBarrier();
    }
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    if (params.n == 1u) {
        decode(wid.x, lid.x);
    } else {
        prefill(wid.x, wid.y, lid.x);
    }
}

// ---- the gpu family: workgroups of GPU_WG invocations, neighbouring invocations on neighbouring
// addresses, K/V tiles and reductions in workgroup memory (under 16 KiB an entry point, so every
// WebGPU device runs them; GPU_WG = 128 is within every device's invocation limit).
// prefill_tiled: workgroup (h, b) takes queries Q_TILE * b ... of head h, Q_LANES invocations a query.
//   It walks the key range of its queries in tiles: the tile's K rows are staged in workgroup memory
//   (f32, rows padded to max(head_dim, head_dim_v) + 1 floats so that lanes scoring different keys
//   read different banks), each lane scores its keys of the tile for its query; then the V rows over
//   the K rows, and each lane updates its query's online softmax (running max and sum, rescaled
//   accumulator) and its output columns. Tiles outside every query's visible keys (causal, window)
//   are never visited.
// decode_split (flash-decoding): workgroup (x, s) serves up to G_MAX query heads of one KV group
//   (x = kv head * ceil(g / G_MAX) + head chunk) on the visible keys SPLIT_KEYS * s ... of split s, so
//   that each K and V element loaded serves all those heads. Scores: LANES_PER_KEY neighbouring
//   invocations share a key (its row read in one run of addresses) and their partial dot products
//   are summed through workgroup memory; the split's scores stay in workgroup memory, their maximum
//   per head comes from a tree, then p = exp(s - max) in place, and each invocation accumulates
//   p * v for its output columns over a subset of the keys. Each split writes (max, sum, unnormalised
//   output) per head into `out` (bound to the engine's split buffer); attention_combine.wgsl merges
//   the splits. The host launches ceil(visible keys / SPLIT_KEYS) splits.
const GPU_WG: u32 = 128u;
const Q_TILE: u32 = 16u; // prefill queries a workgroup
const Q_LANES: u32 = GPU_WG / Q_TILE; // invocations a query
const KV_TILE_MAX: u32 = 32u; // prefill keys a tile at most
const TILE_FLOATS: u32 = 2080u; // the K / V tile: 32 keys of head_dim 64 (+1 padding), 16 of 128, 8 of 256
const LANE_KEYS: u32 = KV_TILE_MAX / Q_LANES; // keys a lane scores a tile, at most
const LANE_COLS: u32 = MAX_HEAD_DIM / Q_LANES; // output columns a lane owns, at most
const G_MAX: u32 = 8u; // query heads a decode workgroup serves
const SPLIT_KEYS: u32 = 256u; // keys a decode split covers
const LANES_PER_KEY: u32 = 8u;
const PASS_KEYS: u32 = GPU_WG / LANES_PER_KEY; // keys scored a pass (PASS_KEYS * G_MAX = GPU_WG)
const SPLIT_COLS: u32 = MAX_HEAD_DIM / GPU_WG; // decode output columns an invocation owns, at most

var<workgroup> kv_tile: array<f32, TILE_FLOATS>; // prefill: K rows of the tile, then V rows
var<workgroup> tile_scores: array<f32, Q_TILE * KV_TILE_MAX>; // prefill: (query, key) scores
var<workgroup> split_p: array<f32, G_MAX * SPLIT_KEYS>; // decode: (head, key) scores, then exp(score - max)
var<workgroup> split_red: array<f32, G_MAX * GPU_WG>; // decode: (head, invocation) partial dots, maxima, accumulators

fn finish_score(qk: f32, j: u32, slope: f32) -> f32 {
    var s = (qk + slope * f32(j)) * params.scale;
    if (params.softcap > 0.0) {
        s = params.softcap * tanh_accurate(s / params.softcap);
    }
    return s;
}

@compute @workgroup_size(GPU_WG)
fn prefill_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let i0 = wid.y * Q_TILE;
    let kvh = h / (params.n_head / params.n_head_kv);
    let d = params.head_dim;
    let dv = params.head_dim_v;
    let kv_row = params.n_head_kv * d;
    let v_row = params.n_head_kv * dv;
    let stride = max(d, dv) + 1u;
    let tile_keys = min(KV_TILE_MAX, TILE_FLOATS / stride);
    // keys [lo, hi): every key some query of the tile sees (queries past n repeat the last one)
    var lo = params.n_kv;
    var hi = 0u;
    for (var r = 0u; r < Q_TILE; r++) {
        let pos = q_pos[min(i0 + r, params.n - 1u)];
        lo = min(lo, first_key(pos));
        hi = max(hi, min(pos + 1u, params.n_kv));
    }
    let qi = lid / Q_LANES;
    let lane = lid % Q_LANES;
    let i = min(i0 + qi, params.n - 1u);
    let pos = q_pos[i];
    let start = first_key(pos);
    let end = min(pos + 1u, params.n_kv);
    let q_base = (i * params.n_head + h) * d;
    let slope = alibi_slope(h);
    var acc: array<f32, LANE_COLS>; // columns lane + Q_LANES * k of query i, unnormalised
    for (var k = 0u; k < LANE_COLS; k++) {
        acc[k] = 0.0;
    }
    var run_max = LOWEST;
    var run_sum = 0.0;
    for (var t0 = lo; t0 < hi; t0 += tile_keys) {
        let nk = min(tile_keys, hi - t0);
        for (var e = lid; e < nk * d; e += GPU_WG) {
            let t = e / d;
            let c = e - t * d;
            kv_tile[t * stride + c] = f32(k_cache[(t0 + t) * kv_row + kvh * d + c]);
        }
        workgroupBarrier();
        // this lane's keys of the tile: lane + Q_LANES * j (past nk: the last key again, not stored)
        var s: array<f32, LANE_KEYS>;
        var row: array<u32, LANE_KEYS>;
        for (var j = 0u; j < LANE_KEYS; j++) {
            s[j] = 0.0;
            row[j] = min(lane + Q_LANES * j, nk - 1u) * stride;
        }
        for (var c = 0u; c < d; c++) {
            let qc = q[q_base + c];
            for (var j = 0u; j < LANE_KEYS; j++) {
                s[j] = fma(qc, kv_tile[row[j] + c], s[j]);
            }
        }
        for (var j = 0u; j < LANE_KEYS; j++) {
            let t = lane + Q_LANES * j;
            if (t < nk) {
                let key = t0 + t;
                tile_scores[qi * KV_TILE_MAX + t] = select(LOWEST, finish_score(s[j], key, slope), key >= start && key < end);
            }
        }
        workgroupBarrier();
        for (var e = lid; e < nk * dv; e += GPU_WG) {
            let t = e / dv;
            let c = e - t * dv;
            kv_tile[t * stride + c] = f32(v_cache[(t0 + t) * v_row + kvh * dv + c]);
        }
        var new_max = run_max;
        for (var t = 0u; t < nk; t++) {
            new_max = max(new_max, tile_scores[qi * KV_TILE_MAX + t]);
        }
        workgroupBarrier();
        let alpha = exp(run_max - new_max);
        run_sum *= alpha;
        for (var k = 0u; k < LANE_COLS; k++) {
            acc[k] *= alpha;
        }
        for (var t = 0u; t < nk; t++) {
            let key = t0 + t;
            let p = select(0.0, exp(tile_scores[qi * KV_TILE_MAX + t] - new_max), key >= start && key < end);
            run_sum += p;
            for (var k = 0u; k < LANE_COLS; k++) {
                let c = lane + Q_LANES * k;
                if (c < dv) {
                    acc[k] = fma(p, kv_tile[t * stride + c], acc[k]);
                }
            }
        }
        run_max = new_max;
        workgroupBarrier(); // the next tile overwrites kv_tile and tile_scores
    }
    if (i0 + qi < params.n) {
        let o = ((i0 + qi) * params.n_head + h) * dv;
        for (var k = 0u; k < LANE_COLS; k++) {
            let c = lane + Q_LANES * k;
            if (c < dv) {
                out[o + c] = acc[k] / run_sum;
            }
        }
    }
}

@compute @workgroup_size(GPU_WG)
fn decode_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = params.n_head / params.n_head_kv;
    let chunks = (g + G_MAX - 1u) / G_MAX;
    let kvh = wid.x / chunks;
    let h0 = kvh * g + (wid.x % chunks) * G_MAX; // this workgroup's heads h0 .. h0 + heads - 1
    let heads = min(G_MAX, kvh * g + g - h0);
    let d = params.head_dim;
    let dv = params.head_dim_v;
    let kv_row = params.n_head_kv * d;
    let v_row = params.n_head_kv * dv;
    let pos = q_pos[0];
    let end = min(pos + 1u, params.n_kv);
    let j0 = first_key(pos) + wid.y * SPLIT_KEYS; // this split's keys: j0 .. j0 + len - 1
    let len = select(0u, min(SPLIT_KEYS, end - j0), j0 < end);

    // scores, PASS_KEYS keys a pass: invocation (key kk, lane) sums q . k over dims lane, lane + LANES_PER_KEY, ...
    let lane = lid % LANES_PER_KEY;
    let kk = lid / LANES_PER_KEY;
    for (var base = 0u; base < len; base += PASS_KEYS) {
        let k_off = (j0 + min(base + kk, len - 1u)) * kv_row + kvh * d; // past len: the last key again, not stored
        var part: array<f32, G_MAX>;
        for (var hh = 0u; hh < G_MAX; hh++) {
            part[hh] = 0.0;
        }
        for (var c = lane; c < d; c += LANES_PER_KEY) {
            let kc = f32(k_cache[k_off + c]);
            for (var hh = 0u; hh < G_MAX; hh++) {
                if (hh < heads) {
                    part[hh] = fma(q[(h0 + hh) * d + c], kc, part[hh]);
                }
            }
        }
        for (var hh = 0u; hh < G_MAX; hh++) {
            split_red[hh * GPU_WG + lid] = part[hh];
        }
        workgroupBarrier();
        let hh = lid / PASS_KEYS; // now invocation (head hh, key base + lid % PASS_KEYS)
        let t = base + lid % PASS_KEYS;
        if (hh < heads && t < len) {
            var qk = 0.0;
            for (var l = 0u; l < LANES_PER_KEY; l++) {
                qk += split_red[hh * GPU_WG + (lid % PASS_KEYS) * LANES_PER_KEY + l];
            }
            split_p[hh * SPLIT_KEYS + t] = finish_score(qk, j0 + t, alibi_slope(h0 + hh));
        }
        workgroupBarrier();
    }

    // each head's maximum score: every invocation's keys, then a tree over split_red
    for (var hh = 0u; hh < G_MAX; hh++) {
        var m = LOWEST;
        if (hh < heads) {
            for (var t = lid; t < len; t += GPU_WG) {
                m = max(m, split_p[hh * SPLIT_KEYS + t]);
            }
        }
        split_red[hh * GPU_WG + lid] = m;
    }
    workgroupBarrier();
    for (var w = GPU_WG / 2u; w > 0u; w /= 2u) {
        if (lid < w) {
            for (var hh = 0u; hh < G_MAX; hh++) {
                split_red[hh * GPU_WG + lid] = max(split_red[hh * GPU_WG + lid], split_red[hh * GPU_WG + lid + w]);
            }
        }
        workgroupBarrier();
    }
    var head_max: array<f32, G_MAX>;
    for (var hh = 0u; hh < G_MAX; hh++) {
        head_max[hh] = split_red[hh * GPU_WG];
        if (hh < heads) {
            for (var t = lid; t < len; t += GPU_WG) {
                split_p[hh * SPLIT_KEYS + t] = exp(split_p[hh * SPLIT_KEYS + t] - head_max[hh]);
            }
        }
    }
    workgroupBarrier();

    // p * v: invocation (key subset sub, columns c0 + GPU_WG * k); with head_dim_v <= GPU_WG there are
    // GPU_WG / head_dim_v subsets of the keys (keys sub, sub + n_sub, ...), each summed apart
    let n_sub = max(1u, GPU_WG / dv);
    let sub = select(0u, lid / dv, dv <= GPU_WG);
    let c0 = select(lid, lid % dv, dv <= GPU_WG);
    var acc: array<f32, G_MAX * SPLIT_COLS>; // (head, column k)
    var sum: array<f32, G_MAX>;
    for (var hh = 0u; hh < G_MAX; hh++) {
        sum[hh] = 0.0;
        for (var k = 0u; k < SPLIT_COLS; k++) {
            acc[hh * SPLIT_COLS + k] = 0.0;
        }
    }
    if (sub < n_sub) {
        for (var t = sub; t < len; t += n_sub) {
            let v_off = (j0 + t) * v_row + kvh * dv;
            for (var k = 0u; k < SPLIT_COLS; k++) {
                let c = c0 + GPU_WG * k;
                if (c < dv) {
                    let vc = f32(v_cache[v_off + c]);
                    for (var hh = 0u; hh < G_MAX; hh++) {
                        if (hh < heads) {
                            acc[hh * SPLIT_COLS + k] = fma(split_p[hh * SPLIT_KEYS + t], vc, acc[hh * SPLIT_COLS + k]);
                        }
                    }
                }
            }
            for (var hh = 0u; hh < G_MAX; hh++) {
                sum[hh] += split_p[hh * SPLIT_KEYS + t];
            }
        }
    }
    if (n_sub > 1u) { // the subsets' accumulators and sums (all against the same maxima) added up
        workgroupBarrier();
        for (var hh = 0u; hh < G_MAX; hh++) {
            split_red[hh * GPU_WG + lid] = acc[hh * SPLIT_COLS];
            if (c0 == 0u && sub < n_sub) {
                split_p[hh * SPLIT_KEYS + sub] = sum[hh];
            }
        }
        workgroupBarrier();
        if (sub == 0u) {
            for (var hh = 0u; hh < G_MAX; hh++) {
                var a = 0.0;
                var l = 0.0;
                for (var u = 0u; u < n_sub; u++) {
                    a += split_red[hh * GPU_WG + u * dv + c0];
                    l += split_p[hh * SPLIT_KEYS + u];
                }
                acc[hh * SPLIT_COLS] = a;
                sum[hh] = l;
            }
        }
    }
    if (sub == 0u && params.direct != 0u) { // the only split: the softmax's output itself, no combine launch
        for (var hh = 0u; hh < heads; hh++) {
            for (var k = 0u; k < SPLIT_COLS; k++) {
                let c = c0 + GPU_WG * k;
                if (c < dv) {
                    out[(h0 + hh) * dv + c] = acc[hh * SPLIT_COLS + k] / sum[hh];
                }
            }
        }
    } else if (sub == 0u) {
        let row = dv + 2u;
        for (var hh = 0u; hh < heads; hh++) {
            let o = (wid.y * params.n_head + h0 + hh) * row;
            if (c0 == 0u) {
                out[o] = head_max[hh];
                out[o + 1u] = sum[hh];
            }
            for (var k = 0u; k < SPLIT_COLS; k++) {
                let c = c0 + GPU_WG * k;
                if (c < dv) {
                    out[o + 2u + c] = acc[hh * SPLIT_COLS + k];
                }
            }
        }
    }
}
