// sample: out[0] = reference.sample(logits[offset : offset + vocab], ..., u = random_uniform(seed, step))   ref: reference.sample, reference.random_uniform   grid: (1, 1, 1)
// One workgroup; the chain in llama.cpp's order:
//   0. (use_mask) a grammar's mask, one bit per id (bit i % 32 of word i / 32; 1 = allowed): a
//      masked-out id reads as MASKED, below every logit (never drawn; its weight exp(MASKED - max)
//      is 0). Applied as each logit is read, after the adjust step, so the row keeps its logits.
//   1. adjust: for each of the n_adjust entries (one per id, host-made): logit += bias (logit_bias);
//      for a penalized id (count > 0 in the penalty window) the repetition penalty divides a positive
//      logit and multiplies one <= 0, then `sub` (count * frequency + presence, host-computed in f32)
//      is subtracted. The row is adjusted in place.
//   2. top-k: each invocation keeps a sorted list of the best k logits of its strided share of the
//      row; k rounds of a workgroup reduction merge the lists' heads into the row's top k, in
//      reference order (logit descending, then id ascending). k covers top_logprobs too.
//   3. (logprobs) sum of exp(logit - max) over the row, reduced across the workgroup.
//   4. top-p (softmax of the top_k candidates at temperature 1, shortest prefix whose cumulative
//      weight reaches top_p * total), min-p (exp(logit - max) >= min_p), temperature, the draw: the
//      first candidate whose cumulative weight exceeds u * total.
// top_k <= 1 or temperature <= 0 is greedy (argmax of the adjusted row, ties to the lowest id).
// top_k and n_top are at most MAX_K: the host rejects larger values.
override WG_SIZE: u32 = 64u; // a power of two; the cpu family's (SwiftShader's compile time grows with the workgroup arrays: 0.60 s at 256, 0.39 s at 64); the gpu family's engines set up to 256
const MAX_K: u32 = 64u;
const NONE: u32 = 0xffffffffu; // an empty slot: ranks below every logit, MASKED included
const MASKED: f32 = -0x1.fffffep+127f; // a masked-out logit: the lowest finite f32 (reference.MASKED); WGSL has no infinities

struct Params {
    vocab: u32,
    offset: u32, // row start in logits, in elements
    top_k: u32,
    temperature: f32,
    seed: u32,
    step: u32,
    top_p: f32, // >= 1: off
    min_p: f32, // <= 0: off
    repetition_penalty: f32,
    n_adjust: u32, // entries in adjust
    n_top: u32, // top logprobs to write (<= MAX_K)
    want_logprobs: u32, // 1: write logprobs
    use_mask: u32, // 1: apply mask
}

struct Adjust {
    id: u32,
    penalized: u32, // 1: count > 0 in the penalty window
    bias: f32,
    sub: f32, // count * frequency_penalty + presence_penalty
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> adjust: array<Adjust>; // (>= n_adjust,) distinct ids
@group(0) @binding(2) var<storage, read_write> logits: array<f32>; // (rows, vocab), this row at offset; adjusted in place
@group(0) @binding(3) var<storage, read_write> out: array<u32>; // (1,) the chosen token id
@group(0) @binding(4) var<storage, read_write> logprobs: array<u32>; // (2 + 2 * n_top,) the chosen's logprob, n_top, then n_top (id, logprob) pairs; f32 as bits
@group(0) @binding(5) var<storage, read> mask: array<u32>; // (ceil(vocab / 32),) when use_mask: bit i % 32 of word i / 32 allows id i

var<private> top_val: array<f32, MAX_K>; // this invocation's best logits, best first
var<private> top_id: array<u32, MAX_K>;
var<workgroup> red_val: array<f32, WG_SIZE>;
var<workgroup> red_id: array<u32, WG_SIZE>;
var<workgroup> red_lane: array<u32, WG_SIZE>;
var<workgroup> cand_val: array<f32, MAX_K>; // the row's top k, best first
var<workgroup> cand_id: array<u32, MAX_K>;

// PCG-RXS-M-XS 32-bit hash, as reference.pcg_hash.
fn pcg_hash(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// reference.random_uniform(seed, step): 24 random bits in [0, 1), from (seed, step) alone.
fn random_uniform(seed: u32, counter: u32) -> f32 {
    return f32(pcg_hash(seed ^ pcg_hash(counter)) >> 8u) / 16777216.0;
}

// Does (av, ai) rank before (bv, bi)? Higher logit first, then lower id; empty slots last.
fn ranks_before(av: f32, ai: u32, bv: f32, bi: u32) -> bool {
    if (bi == NONE) {
        return ai != NONE;
    }
    return ai != NONE && (av > bv || (av == bv && ai < bi));
}

// Logit i of the row, MASKED when the grammar's mask leaves it out.
fn logit(i: u32) -> f32 {
    if (params.use_mask != 0u && (mask[i >> 5u] & (1u << (i & 31u))) == 0u) {
        return MASKED;
    }
    return logits[params.offset + i];
}

// A candidate's weight at the temperature: 0 for a masked one ((MASKED - best) / temperature
// could overflow f32).
fn tempered(v: f32, best: f32) -> f32 {
    return select(exp((v - best) / params.temperature), 0.0, v == MASKED);
}

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
    let lane = lid.x;

    // 1. logit_bias and penalties (reference.apply_logit_bias, reference.apply_penalties)
    for (var e = lane; e < params.n_adjust; e += WG_SIZE) {
        let a = adjust[e];
        let at = params.offset + a.id;
        var v = logits[at] + a.bias;
        if (a.penalized != 0u) {
            if (v <= 0.0) {
                v = v * params.repetition_penalty;
            } else {
                v = v / params.repetition_penalty;
            }
            v = v - a.sub;
        }
        logits[at] = v;
    }
    storageBarrier(); // the scan below reads what other invocations wrote

    let greedy = params.top_k <= 1u || params.temperature <= 0.0;
    var k_sample = min(min(params.top_k, MAX_K), params.vocab);
    if (greedy) {
        k_sample = 1u;
    }
    let k = min(max(k_sample, params.n_top), min(MAX_K, params.vocab));

    // 2. top-k. Ids grow along the scan, so an equal logit never displaces one already held.
    var count = 0u;
    for (var i = lane; i < params.vocab; i += WG_SIZE) {
        let v = logit(i);
        if (count < k || ranks_before(v, i, top_val[k - 1u], top_id[k - 1u])) {
            var p = min(count, k - 1u);
            while (p > 0u && ranks_before(v, i, top_val[p - 1u], top_id[p - 1u])) {
                top_val[p] = top_val[p - 1u];
                top_id[p] = top_id[p - 1u];
                p--;
            }
            top_val[p] = v;
            top_id[p] = i;
            count = min(count + 1u, k);
        }
    }

    // Merge: each round takes the best head among the invocations' lists.
    var head = 0u;
    for (var r = 0u; r < k; r++) {
        red_lane[lane] = lane;
        if (head < count) {
            red_val[lane] = top_val[head];
            red_id[lane] = top_id[head];
        } else {
            red_val[lane] = 0.0;
            red_id[lane] = NONE;
        }
        workgroupBarrier();
        for (var s = WG_SIZE / 2u; s > 0u; s >>= 1u) {
            if (lane < s && ranks_before(red_val[lane + s], red_id[lane + s], red_val[lane], red_id[lane])) {
                red_val[lane] = red_val[lane + s];
                red_id[lane] = red_id[lane + s];
                red_lane[lane] = red_lane[lane + s];
            }
            workgroupBarrier();
        }
        if (lane == red_lane[0]) {
            head++;
        }
        if (lane == 0u) {
            cand_val[r] = red_val[0];
            cand_id[r] = red_id[0];
        }
        workgroupBarrier(); // the red_* arrays are rewritten next round
    }

    // 3. log of the softmax's denominator over the whole row, relative to its max (cand_val[0])
    var log_total = 0.0;
    if (params.want_logprobs != 0u) {
        let top = cand_val[0];
        var part = 0.0;
        for (var i = lane; i < params.vocab; i += WG_SIZE) {
            part += exp(logit(i) - top);
        }
        red_val[lane] = part;
        workgroupBarrier();
        for (var s = WG_SIZE / 2u; s > 0u; s >>= 1u) {
            if (lane < s) {
                red_val[lane] += red_val[lane + s];
            }
            workgroupBarrier();
        }
        log_total = top + log(red_val[0]);
    }

    if (lane != 0u) {
        return;
    }
    // 4. truncation and the draw, summed in the reference's order so both see the same sums
    var pick = 0u;
    if (!greedy) {
        var m = k_sample;
        if (params.top_p < 1.0) {
            var total = 0.0;
            for (var r = 0u; r < k_sample; r++) {
                total += exp(cand_val[r] - cand_val[0]);
            }
            let reach = params.top_p * total;
            var cum = 0.0;
            for (var r = 0u; r < k_sample; r++) {
                cum += exp(cand_val[r] - cand_val[0]);
                if (cum >= reach) {
                    m = r + 1u;
                    break;
                }
            }
        }
        if (params.min_p > 0.0) {
            var kept = 0u;
            for (var r = 0u; r < k_sample; r++) {
                kept += select(0u, 1u, exp(cand_val[r] - cand_val[0]) >= params.min_p);
            }
            m = min(m, max(kept, 1u));
        }
        var total = 0.0;
        for (var r = 0u; r < m; r++) {
            total += tempered(cand_val[r], cand_val[0]);
        }
        let draw = random_uniform(params.seed, params.step) * total;
        var cdf = 0.0;
        pick = m - 1u;
        for (var r = 0u; r < m; r++) {
            cdf += tempered(cand_val[r], cand_val[0]);
            if (cdf > draw) {
                pick = r;
                break;
            }
        }
    }
    out[0] = cand_id[pick];
    if (params.want_logprobs != 0u) {
        logprobs[0] = bitcast<u32>(cand_val[pick] - log_total);
        logprobs[1] = params.n_top;
        for (var j = 0u; j < min(params.n_top, k); j++) {
            logprobs[2u + 2u * j] = cand_id[j];
            logprobs[3u + 2u * j] = bitcast<u32>(cand_val[j] - log_total);
        }
    }
}
