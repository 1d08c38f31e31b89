// sample: out[0] = sample_top_k(logits[offset : offset + vocab], top_k, temperature, random_uniform(seed, step))   ref: reference.sample_top_k, reference.random_uniform   grid: (1, 1, 1)
// One workgroup. Each invocation keeps a sorted list of the best k logits of its strided share of
// the row; k rounds of a workgroup reduction then merge the lists' heads into the row's top k, in
// reference order (logit descending, then id ascending). top_k <= 1 or temperature <= 0 is greedy
// (argmax, ties to the lowest id). top_k is at most MAX_K: the host rejects larger values.
override WG_SIZE: u32 = 256u; // a power of two
const MAX_K: u32 = 64u;
const NONE: u32 = 0xffffffffu; // an empty slot: ranks below every logit, -inf included

struct Params {
    vocab: u32,
    offset: u32, // row start in logits, in elements
    top_k: u32,
    temperature: f32,
    seed: u32,
    step: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;  // (rows, vocab), this row at offset
@group(0) @binding(2) var<storage, read_write> out: array<u32>; // (1,) the chosen token id

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

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(local_invocation_id) lid: vec3<u32>) {
    let lane = lid.x;
    var k = min(min(params.top_k, MAX_K), params.vocab);
    if (params.top_k <= 1u || params.temperature <= 0.0) {
        k = 1u;
    }

    // Ids grow along the scan, so an equal logit never displaces one already held.
    var count = 0u;
    for (var i = lane; i < params.vocab; i += WG_SIZE) {
        let v = logits[params.offset + i];
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

    if (lane != 0u) {
        return;
    }
    if (k == 1u) {
        out[0] = cand_id[0];
        return;
    }
    // Softmax of the k logits over temperature, then the first candidate whose cumulative
    // weight exceeds u * total, summed in the reference's order so both see the same sums.
    var total = 0.0;
    for (var r = 0u; r < k; r++) {
        total += exp((cand_val[r] - cand_val[0]) / params.temperature);
    }
    let draw = random_uniform(params.seed, params.step) * total;
    var cdf = 0.0;
    var pick = k - 1u;
    for (var r = 0u; r < k; r++) {
        cdf += exp((cand_val[r] - cand_val[0]) / params.temperature);
        if (cdf > draw) {
            pick = r;
            break;
        }
    }
    out[0] = cand_id[pick];
}
