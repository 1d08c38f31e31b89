// matmul_q3_k: y = x @ W^T (+ bias) (+ residual), or with glu act(gate) * up of row pairs, W Q3_K (w = (d * sc) * (q - 4 * !hbit) per 16-element sub-block, sc signed)   ref: reference.matmul (+ reference.add; reference.swiglu / geglu)   grid: main (ceil(rows / 32), ceil(n / 32), 1); matvec (groups_x, groups_y, 1) with groups_x * groups_y >= ceil(rows / 64), n = 1; matvec_split the same with ceil(rows / 4); main_tiled (ceil(rows / 64), ceil(n / 32), 1)
// Composed by scripts/compose_shaders.py from shaders/compose/ops/matmul.wgsl and types/q3_k.wgsl: edit those.
// Four entry points on one dequantiser (unit / dot_unit), two per kernel family. The cpu family
// (CPU-emulated WebGPU), without workgroup memory or barriers (on llvmpipe both cost more than the
// math): `main` (prefill) gives each thread 4 x rows by 8 W rows, each W unit dequantised once
// (unit) for 4 x rows and each x load serving 8 W rows; `matvec` (decode) gives each thread four
// whole W rows, walked along k alone. The gpu family (real GPUs): `matvec_split` (decode) splits k
// over a workgroup's threads so their loads coalesce; `main_tiled` (prefill) dequantises each W unit
// once per workgroup into workgroup memory, 64 W rows by 32 x rows, 4 x 8 outputs a thread.
// W is one row chunk of the weight (py/wgllm/gpu/weights.py documents the repacked arrays); its
// rows land at y[:, row_offset + r].
// Row length k: quantised types have whole blocks (k % 32 == 0); F32/F16/BF16 take any k % 4 == 0
// (x rows are read as vec4s, k / 4 of them a row), their rows zero-padded at repack time to whole
// 32-element units, ceil(k / 32) of them (k_units). The last unit's x elements past k are masked to
// zero (x_unit; in main_tiled the staging): past k lies the next x row, or the end of the buffer.
// Params.k is the true k: the x rows' stride and the fused norm's divisor.
const MATVEC_WG: u32 = 16u;   // matvec threads per workgroup
const MATVEC_ROWS: u32 = 64u; // output rows per matvec workgroup: four per thread, each x load serves four rows
const TILE: u32 = 32u;       // matmul workgroup tile: 32 x rows by 32 W rows; 32 threads of 4 x rows by 8 W rows

struct Params {
    k: u32,          // row length of W (before padding) and of x
    n_out: u32,      // columns of y (all chunks)
    rows: u32,       // W rows in this chunk
    row_offset: u32, // first output column of this chunk
    n: u32,          // rows of x
    has_bias: u32,
    has_residual: u32, // y = x @ W^T + bias + residual: the residual add fused into the matmul
    glu: u32,          // 1 swiglu, 2 geglu: rows are (gate, up) pairs, y[:, p] = act(gate_p) * up_p (n_out / 2 columns)
    norm: u32,         // decode entries: x is RMS-normed in the kernel, its norm weight bound at `residual` (norm_unit)
    norm_eps: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> hm: array<vec4<u32>>; // (rows * k / 256, 2) high bits: elem 128h+32j+l in bit 4h+j of byte l
@group(0) @binding(2) var<storage, read> qs: array<vec4<u32>>; // (rows * k / 256, 4) two-bit quants: elem 128h+32j+l in bits 2j.. of byte 32h+l
@group(0) @binding(3) var<storage, read> sc3: array<u32>;       // (rows * k / 256, 4) signed sub-block scales (6-bit scale - 32), a byte each
@group(0) @binding(4) var<storage, read> d: array<u32>;         // (rows * k / 256) f16 block scales, two a word
@group(0) @binding(5) var<storage, read> x: array<vec4<f32>>;  // (n, k / 4)
@group(0) @binding(6) var<storage, read> bias: array<f32>;     // (n_out,) read when has_bias
@group(0) @binding(7) var<storage, read> residual: array<f32>; // (n, n_out) read when has_residual (not with glu); never y itself; (k,) the norm weight when norm
@group(0) @binding(8) var<storage, read_write> y: array<f32>;  // (n, n_out), or (n, n_out / 2) with glu

fn f16_at(words: u32, i: u32) -> f32 {
    return unpack2x16float(words)[i & 1u];
}

// Four Q3_K values: bits `shift`.. of q's bytes with bit `hbit` of h's bytes as the third, minus 4.
fn q3(q: u32, shift: u32, h: u32, hbit: u32) -> vec4<f32> {
    let lo = (vec4<u32>(q >> shift) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(3u);
    let hi = (vec4<u32>(h >> hbit) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(1u);
    return vec4<f32>(lo | (hi << vec4<u32>(2u))) - 4.0;
}

// Row `row`'s 32 elements 32u .. 32u + 31, dequantised (see dot_unit for the layout).
fn unit(row: u32, u: u32) -> array<vec4<f32>, 8> {
    let b = row * (params.k / 256u) + u / 8u;
    let h = (u % 8u) / 4u;
    let j = u % 4u;
    let q0 = qs[b * 4u + 2u * h];
    let q1 = qs[b * 4u + 2u * h + 1u];
    let h0 = hm[b * 2u];
    let h1 = hm[b * 2u + 1u];
    let qb = 2u * j;
    let hb = 4u * h + j;
    let scales = bitcast<i32>(sc3[b * 4u + (u % 8u) / 2u]);
    let db = f16_at(d[b / 2u], b);
    let s0 = db * f32(extractBits(scales, 16u * (u % 2u), 8u));
    let s1 = db * f32(extractBits(scales, 16u * (u % 2u) + 8u, 8u));
    return array<vec4<f32>, 8>(s0 * q3(q0.x, qb, h0.x, hb), s0 * q3(q0.y, qb, h0.y, hb), s0 * q3(q0.z, qb, h0.z, hb), s0 * q3(q0.w, qb, h0.w, hb),
                               s1 * q3(q1.x, qb, h1.x, hb), s1 * q3(q1.y, qb, h1.y, hb), s1 * q3(q1.z, qb, h1.z, hb), s1 * q3(q1.w, qb, h1.w, hb));
}

// Row `row`'s 32 elements 32u .. 32u + 31 dotted with xs, those elements of x.
fn dot_unit(row: u32, u: u32, xs: array<vec4<f32>, 8>) -> f32 {
    let b = row * (params.k / 256u) + u / 8u;
    let h = (u % 8u) / 4u; // half of the block
    let j = u % 4u;        // quarter of the half: elements 128h + 32j + l, sub-blocks 8h + 2j (l < 16) and + 1
    let q0 = qs[b * 4u + 2u * h];
    let q1 = qs[b * 4u + 2u * h + 1u];
    let h0 = hm[b * 2u];
    let h1 = hm[b * 2u + 1u];
    let qb = 2u * j;
    let hb = 4u * h + j;
    let s0 = dot(q3(q0.x, qb, h0.x, hb), xs[0]) + dot(q3(q0.y, qb, h0.y, hb), xs[1]) + dot(q3(q0.z, qb, h0.z, hb), xs[2]) + dot(q3(q0.w, qb, h0.w, hb), xs[3]);
    let s1 = dot(q3(q1.x, qb, h1.x, hb), xs[4]) + dot(q3(q1.y, qb, h1.y, hb), xs[5]) + dot(q3(q1.z, qb, h1.z, hb), xs[6]) + dot(q3(q1.w, qb, h1.w, hb), xs[7]);
    let scales = bitcast<i32>(sc3[b * 4u + (u % 8u) / 2u]);
    let sc0 = f32(extractBits(scales, 16u * (u % 2u), 8u));
    let sc1 = f32(extractBits(scales, 16u * (u % 2u) + 8u, 8u));
    return f16_at(d[b / 2u], b) * (sc0 * s0 + sc1 * s1);
}

// ---- x -------------------------------------------------------------------------------------------
// 32-element units of a W row: the last one zero-padded past k (F32/F16/BF16 rows of k % 32 != 0)
fn k_units() -> u32 {
    return (params.k + 31u) / 32u;
}

// Elements 32u .. 32u + 31 of the x row whose first vec4 is `at`, zeros past k (never the next row's).
fn x_unit(at: u32, u: u32) -> array<vec4<f32>, 8> {
    var xs: array<vec4<f32>, 8>; // zeros
    let n4 = min(params.k / 4u - 8u * u, 8u);
    if (n4 == 8u) {
        for (var j = 0u; j < 8u; j++) {
            xs[j] = x[at + 8u * u + j];
        }
    } else {
        for (var j = 0u; j < n4; j++) {
            xs[j] = x[at + 8u * u + j];
        }
    }
    return xs;
}

// ---- epilogue --------------------------------------------------------------------------------------
// Chunk rows of output rows v (< rows): the same, or with glu the pairs' rows, which a chunk holds as
// two halves (gate rows, then up rows): row 2p is gate row p, row 2p + 1 up row p.
fn chunk_rows(v: vec4<u32>) -> vec4<u32> {
    if (params.glu == 0u) {
        return v;
    }
    return v / 2u + (v % 2u) * (params.rows / 2u);
}

// as gelu_tanh.wgsl (which says why): 1 / (1 + e^-2z) without cancellation or overflow, its exponent
// added up exactly
const GELU_C1: f32 = 2.30218505859375;      // C = 2 sqrt(2/pi) log2(e) = C1 + C2, C1 of 16 significant bits
const GELU_C2: f32 = 2.3139549739426002e-5;
const GELU_K1: f32 = 0.102935791015625;     // K = 0.044715 C = K1 + K2, K1 of 12 significant bits
const GELU_K2: f32 = 7.4485642471699975e-6;
fn gelu_tanh(v: f32) -> f32 {
    let a = min(abs(v), 11.0);
    let ah = bitcast<f32>(bitcast<u32>(a) & 0xFFFF0000u);
    let d = a - ah;
    let q = ah * ah * ah;
    let qh = bitcast<f32>(bitcast<u32>(q) & 0xFFFFF000u);
    let rest = GELU_K1 * (q - qh) + GELU_K2 * q + GELU_C2 * ah
        + d * ((GELU_C1 + GELU_C2) + (GELU_K1 + GELU_K2) * (3.0 * ah * ah + 3.0 * ah * d + d * d));
    let t = i32(round(GELU_K1 * qh * 8388608.0)) + i32(round(GELU_C1 * ah * 8388608.0)) + i32(round(rest * 8388608.0));
    let e = ldexp(exp2(-f32(t & 0x7FFFFF) / 8388608.0), -(t >> 23u));
    return v * select(e, 1.0, v >= 0.0) / (1.0 + e);
}

// Output rows r and r + 1 of the chunk (r even; each written if < rows) for x row xrow: + bias,
// + residual, or with glu act(gate) * up of the pair (rows come in pairs: both exist).
fn store_pair(xrow: u32, r: u32, v: vec2<f32>) {
    if (r >= params.rows) {
        return;
    }
    let col = params.row_offset + r;
    let both = r + 1u < params.rows;
    var s = v;
    if (params.has_bias != 0u) {
        s += vec2<f32>(bias[col], bias[select(col, col + 1u, both)]);
    }
    if (params.glu != 0u) {
        let g = s.x;
        let act = select(gelu_tanh(g), g / (1.0 + exp(-g)), params.glu == 1u); // as swiglu.wgsl, geglu.wgsl
        y[xrow * (params.n_out / 2u) + col / 2u] = act * s.y;
        return;
    }
    let at = xrow * params.n_out + col;
    if (params.has_residual != 0u) {
        s += vec2<f32>(residual[at], residual[select(at, at + 1u, both)]);
    }
    y[at] = s.x;
    if (both) {
        y[at + 1u] = s.y;
    }
}

// ---- decode: one x row ---------------------------------------------------------------------------
// With params.norm the gpu family's decode kernel (matvec_split) takes the residual stream itself and
// RMS-norms it on the way in (the norm launch before the matmul saved): each x unit is multiplied by
// the norm weight (bound at `residual`, which a normed matmul never has) as it is loaded, its sum of
// squares kept beside the dot products, and the sums scaled by 1 / sqrt(mean(x^2) + eps) at the end
// (norm_scale; 1.0 exactly without norm). The cpu family's `matvec` and the prefill entries never run
// with norm (a `matvec` invocation owns whole rows: it would redo the norm over all of x for each
// of its rows' groups, slower on llvmpipe than the launch it saves, bench/NOTES.md).
fn norm_unit(xs: ptr<function, array<vec4<f32>, 8>>, u: u32) -> f32 {
    var ss = 0.0;
    for (var j = 0u; j < 8u; j++) {
        let v = (*xs)[j];
        let e = 32u * u + 4u * j;
        if (e < params.k) { // past k x is zero (x_unit) and the norm weight (k,) has ended
            ss += dot(v, v);
            (*xs)[j] = v * vec4<f32>(residual[e], residual[e + 1u], residual[e + 2u], residual[e + 3u]);
        }
    }
    return ss;
}

fn norm_scale(ss: f32) -> f32 { // the mean over the true k (padding is not x)
    return select(1.0, 1.0 / sqrt(ss / f32(params.k) + params.norm_eps), params.norm != 0u);
}

@compute @workgroup_size(MATVEC_WG)
fn matvec(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
          @builtin(local_invocation_index) li: u32) {
    let row0 = (wid.y * nwg.x + wid.x) * MATVEC_ROWS + 4u * li;
    if (row0 >= params.rows) {
        return;
    }
    let r = chunk_rows(min(vec4<u32>(row0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(params.rows - 1u))); // rows past the end repeat the last
    var acc = vec4<f32>(0.0);
    let full = params.k / 32u; // whole units: x loaded unmasked (a masked load every unit cost ~11 % of a decode step on lavapipe)
    for (var u = 0u; u < full; u++) {
        var xs: array<vec4<f32>, 8>;
        for (var j = 0u; j < 8u; j++) {
            xs[j] = x[8u * u + j];
        }
        acc += vec4<f32>(dot_unit(r.x, u, xs), dot_unit(r.y, u, xs), dot_unit(r.z, u, xs), dot_unit(r.w, u, xs));
    }
    if (full < k_units()) { // the zero-padded last unit of a float row of k % 32 != 0
        let xs = x_unit(0u, full);
        acc += vec4<f32>(dot_unit(r.x, full, xs), dot_unit(r.y, full, xs), dot_unit(r.z, full, xs), dot_unit(r.w, full, xs));
    }
    store_pair(0u, row0, acc.xy);
    store_pair(0u, row0 + 2u, acc.zw);
}

// ---- decode on a GPU (the `gpu` kernel family): the k units of MV_ROWS rows split over the threads --
// Neighbouring threads take neighbouring 32-element units of the same rows, so a subgroup's loads
// are one contiguous run of each row (coalesced); each thread keeps the partial sums of the
// workgroup's MV_ROWS rows, x loaded once per unit for all of them, and the workgroup adds the
// threads' partials at the end: a tree in workgroup memory, or, in the shader's subgroup variant
// (where the device has subgroups: lines ending `// !sg` dropped, lines starting `//sg ` uncommented,
// py/wgllm/gpu/runtime.py subgroup_variant), subgroupAdd within each subgroup and the subgroups' sums
// added in order, for any subgroup size. Grid: (groups_x, groups_y, 1) with
// groups_x * groups_y >= ceil(rows / MV_ROWS).
const MV_ROWS: u32 = 4u;    // output rows per gpu-family matvec workgroup
override MV_WG: u32 = 64u;  // its threads, a power of two (the host may pass up to its invocation limit)

var<workgroup> mv_partial: array<vec4<f32>, MV_WG>;
var<workgroup> mv_ss: array<f32, MV_WG>; // with norm: the threads' sums of squares of x

@compute @workgroup_size(MV_WG)
fn matvec_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) li: u32) { // !sg
//sg            @builtin(local_invocation_index) li: u32, @builtin(subgroup_invocation_id) sg_lane: u32,
//sg            @builtin(subgroup_id) sg_id: u32, @builtin(num_subgroups) n_sg: u32) {
    let row0 = (wid.y * nwg.x + wid.x) * MV_ROWS;
    if (row0 >= params.rows) {
        return; // the whole workgroup: the barriers below stay in uniform control flow
    }
    let r = chunk_rows(min(vec4<u32>(row0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(params.rows - 1u))); // rows past the end repeat the last
    var acc = vec4<f32>(0.0);
    var ss = 0.0;
    let full = params.k / 32u;
    for (var u = li; u < k_units(); u += MV_WG) {
        var xs: array<vec4<f32>, 8>;
        if (u < full) { // whole units unmasked; the zero-padded last unit of a float row of k % 32 != 0 masked
            for (var j = 0u; j < 8u; j++) {
                xs[j] = x[8u * u + j];
            }
        } else {
            xs = x_unit(0u, u);
        }
        if (params.norm != 0u) {
            ss += norm_unit(&xs, u);
        }
        acc += vec4<f32>(dot_unit(r.x, u, xs), dot_unit(r.y, u, xs), dot_unit(r.z, u, xs), dot_unit(r.w, u, xs));
    }
    mv_partial[li] = acc; // !sg
    mv_ss[li] = ss; // !sg
    for (var s = MV_WG / 2u; s > 0u; s >>= 1u) { // !sg
        workgroupBarrier(); // !sg
        if (li < s) { // !sg
            mv_partial[li] += mv_partial[li + s]; // !sg
            mv_ss[li] += mv_ss[li + s]; // !sg
        } // !sg
    } // !sg
//sg    let sg_acc = subgroupAdd(acc); // each subgroup's sum, then the subgroups' sums in order by thread 0
//sg    let sg_ss = subgroupAdd(ss);
//sg    if (sg_lane == 0u) {
//sg        mv_partial[sg_id] = sg_acc;
//sg        mv_ss[sg_id] = sg_ss;
//sg    }
//sg    workgroupBarrier();
//sg    for (var i = 1u; i < n_sg && li == 0u; i++) {
//sg        mv_partial[0] += mv_partial[i];
//sg        mv_ss[0] += mv_ss[i];
//sg    }
    if (li == 0u) {
        let total = mv_partial[0] * norm_scale(mv_ss[0]);
        store_pair(0u, row0, total.xy);
        store_pair(0u, row0 + 2u, total.zw);
    }
}

// ---- prefill: tiles of x rows ----------------------------------------------------------------------
fn dot8(w: array<vec4<f32>, 8>, xs: array<vec4<f32>, 8>) -> f32 {
    return (dot(w[0], xs[0]) + dot(w[1], xs[1]) + dot(w[2], xs[2]) + dot(w[3], xs[3]))
         + (dot(w[4], xs[4]) + dot(w[5], xs[5]) + dot(w[6], xs[6]) + dot(w[7], xs[7]));
}

@compute @workgroup_size(32)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row0 = wid.x * TILE + 8u * (li % 4u);  // W rows (output columns)
    let xrow0 = wid.y * TILE + 4u * (li / 4u); // x rows
    if (row0 >= params.rows || xrow0 >= params.n) {
        return;
    }
    let last = params.rows - 1u; // rows past the end repeat the last and are not written
    let k4 = params.k / 4u;
    let ra = chunk_rows(min(vec4<u32>(row0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(last)));
    let rb = chunk_rows(min(vec4<u32>(row0) + vec4<u32>(4u, 5u, 6u, 7u), vec4<u32>(last)));
    var acc: array<vec4<f32>, 8>; // acc[2i + h][j]: x row xrow0 + i, W row row0 + 4h + j
    // whole units with x loaded unmasked, then the zero-padded last unit of a float row of k % 32 != 0
    // with x masked (the same body twice: a masked load, or a branch on it, in the loop cost ~18 % of a
    // prefill on lavapipe)
    let full = params.k / 32u;
    for (var u = 0u; u < full; u++) {
        let w0 = unit(ra.x, u); // each W unit is loaded once and serves four x rows
        let w1 = unit(ra.y, u);
        let w2 = unit(ra.z, u);
        let w3 = unit(ra.w, u);
        let w4 = unit(rb.x, u);
        let w5 = unit(rb.y, u);
        let w6 = unit(rb.z, u);
        let w7 = unit(rb.w, u);
        for (var i = 0u; i < 4u; i++) {
            let xrow = min(xrow0 + i, params.n - 1u);
            var xs: array<vec4<f32>, 8>;
            for (var j = 0u; j < 8u; j++) {
                xs[j] = x[xrow * k4 + 8u * u + j];
            }
            acc[2u * i] += vec4<f32>(dot8(w0, xs), dot8(w1, xs), dot8(w2, xs), dot8(w3, xs));
            acc[2u * i + 1u] += vec4<f32>(dot8(w4, xs), dot8(w5, xs), dot8(w6, xs), dot8(w7, xs));
        }
    }
    if (full < k_units()) {
        let u = full;
        let w0 = unit(ra.x, u);
        let w1 = unit(ra.y, u);
        let w2 = unit(ra.z, u);
        let w3 = unit(ra.w, u);
        let w4 = unit(rb.x, u);
        let w5 = unit(rb.y, u);
        let w6 = unit(rb.z, u);
        let w7 = unit(rb.w, u);
        for (var i = 0u; i < 4u; i++) {
            let xs = x_unit(min(xrow0 + i, params.n - 1u) * k4, u);
            acc[2u * i] += vec4<f32>(dot8(w0, xs), dot8(w1, xs), dot8(w2, xs), dot8(w3, xs));
            acc[2u * i + 1u] += vec4<f32>(dot8(w4, xs), dot8(w5, xs), dot8(w6, xs), dot8(w7, xs));
        }
    }
    for (var i = 0u; i < 4u; i++) {
        if (xrow0 + i < params.n) {
            store_pair(xrow0 + i, row0, acc[2u * i].xy);
            store_pair(xrow0 + i, row0 + 2u, acc[2u * i].zw);
            store_pair(xrow0 + i, row0 + 4u, acc[2u * i + 1u].xy);
            store_pair(xrow0 + i, row0 + 6u, acc[2u * i + 1u].zw);
        }
    }
}

// ---- prefill on a GPU (the `gpu` kernel family): workgroup-memory tiles -----------------------------
// A workgroup of TILED_WG threads computes y for TILED_N x rows by TILED_ROWS W rows, one 32-element
// unit of k at a time: each W row's unit is dequantised once (unit(), one row a thread) into
// workgroup memory and the x tile's unit staged beside it (neighbouring threads read neighbouring
// vec4s), then after a barrier each thread, one of 8 x 8, multiplies its 4 x rows by 8 W rows (4 row
// pairs) out of workgroup memory into f32 registers. W rows are stored even rows first, then odd
// rows, and each tile row padded to TILED_STRIDE vec4s, so that the 8 threads reading one row each
// hit different banks; a thread's rows are whole pairs (2p, 2p + 1), as store_pair (and glu) need.
// Workgroup memory: (TILED_ROWS + TILED_N) * TILED_STRIDE * 16 = 13824 bytes (<= 16 KiB); 64
// threads (<= 128). Grid: (ceil(rows / TILED_ROWS), ceil(n / TILED_N), 1).
const TILED_ROWS: u32 = 64u;   // W rows (output columns) per main_tiled workgroup
const TILED_N: u32 = 32u;      // x rows per main_tiled workgroup
const TILED_WG: u32 = 64u;     // its threads: 8 x 8, each 4 x rows by 8 W rows
const TILED_STRIDE: u32 = 9u;  // vec4s per tile row in workgroup memory: a unit's 8 and one of padding

var<workgroup> tiled_w: array<vec4<f32>, TILED_ROWS * TILED_STRIDE>; // slot s = (row % 2) * TILED_ROWS / 2 + row / 2
var<workgroup> tiled_x: array<vec4<f32>, TILED_N * TILED_STRIDE>;

@compute @workgroup_size(TILED_WG)
fn main_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let row0 = wid.x * TILED_ROWS; // W rows (output columns) of the tile
    let xrow0 = wid.y * TILED_N;   // x rows
    if (row0 >= params.rows || xrow0 >= params.n) {
        return; // the whole workgroup: the barriers below stay in uniform control flow
    }
    let last = params.rows - 1u; // rows past the end repeat the last and are not written
    let k4 = params.k / 4u;
    let tx = li % 8u; // pairs tx + 8q (q < 4): W rows row0 + 2 (tx + 8q) and the next
    let ty = li / 8u; // x rows xrow0 + ty + 8i (i < 4)
    var acc: array<vec4<f32>, 8>; // acc[2i + h]: x row ty + 8i by the pairs q = 2h (.xy) and 2h + 1 (.zw), (even, odd) row
    for (var u = 0u; u < k_units(); u++) {
        for (var t = li; t < TILED_ROWS; t += TILED_WG) {
            let w = unit(chunk_rows(vec4<u32>(min(row0 + t, last))).x, u);
            let s = ((t % 2u) * (TILED_ROWS / 2u) + t / 2u) * TILED_STRIDE;
            for (var j = 0u; j < 8u; j++) {
                tiled_w[s + j] = w[j];
            }
        }
        for (var e = li; e < TILED_N * 8u; e += TILED_WG) {
            let xrow = min(xrow0 + e / 8u, params.n - 1u);
            var xv = vec4<f32>(0.0); // past k: zeros, as x_unit's
            if (32u * u + 4u * (e % 8u) < params.k) {
                xv = x[xrow * k4 + 8u * u + e % 8u];
            }
            tiled_x[(e / 8u) * TILED_STRIDE + e % 8u] = xv;
        }
        workgroupBarrier();
        for (var j = 0u; j < 8u; j++) {
            var ws: array<vec4<f32>, 8>; // ws[2q]: pair q's even row, ws[2q + 1] its odd row
            for (var q = 0u; q < 4u; q++) {
                ws[2u * q] = tiled_w[(tx + 8u * q) * TILED_STRIDE + j];
                ws[2u * q + 1u] = tiled_w[(TILED_ROWS / 2u + tx + 8u * q) * TILED_STRIDE + j];
            }
            for (var i = 0u; i < 4u; i++) {
                let xv = tiled_x[(ty + 8u * i) * TILED_STRIDE + j];
                acc[2u * i] += vec4<f32>(dot(ws[0], xv), dot(ws[1], xv), dot(ws[2], xv), dot(ws[3], xv));
                acc[2u * i + 1u] += vec4<f32>(dot(ws[4], xv), dot(ws[5], xv), dot(ws[6], xv), dot(ws[7], xv));
            }
        }
        workgroupBarrier(); // the tiles are read before the next unit overwrites them
    }
    for (var i = 0u; i < 4u; i++) {
        let xrow = xrow0 + ty + 8u * i;
        if (xrow < params.n) {
            store_pair(xrow, row0 + 2u * tx, acc[2u * i].xy);
            store_pair(xrow, row0 + 2u * (tx + 8u), acc[2u * i].zw);
            store_pair(xrow, row0 + 2u * (tx + 16u), acc[2u * i + 1u].xy);
            store_pair(xrow, row0 + 2u * (tx + 24u), acc[2u * i + 1u].zw);
        }
    }
}
