// lora_shrink: t = x A^T, the first half of a LoRA update   ref: reference.lora_shrink   grid: (r, n, 1), workgroup (j, i) -> t[i, j]
// Host interface (one dispatch per adapted weight, before lora_expand.wgsl, after the base matmul):
//   binding 0 params (uniform Params: n, k, r as u32), 1 x (n, k) f32, 2 a (r, k) f32, 3 t (n, r) f32.
//   t is scratch of at least n * r floats, shared by every adapted weight (each shrink/expand pair
//   runs in order within one command encoder). WG_SIZE must be a power of two (tree reduction).
override WG_SIZE: u32 = 64u;

struct Params {
    n: u32, // rows of x (tokens)
    k: u32, // inputs of the adapted weight
    r: u32, // LoRA rank
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;       // (n, k)
@group(0) @binding(2) var<storage, read> a: array<f32>;       // (r, k): lora_a as the GGUF stores it
@group(0) @binding(3) var<storage, read_write> t: array<f32>; // (n, r)

var<workgroup> partial: array<f32, WG_SIZE>;

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let j = wid.x;
    let i = wid.y;
    if (j >= params.r || i >= params.n) {
        return; // uniform per workgroup: no barrier is skipped by part of it
    }
    let xs = i * params.k;
    let as_ = j * params.k;
    var acc = 0.0;
    for (var c = lid.x; c < params.k; c += WG_SIZE) {
        acc = fma(x[xs + c], a[as_ + c], acc);
    }
    partial[lid.x] = acc;
    workgroupBarrier();
    for (var s = WG_SIZE / 2u; s > 0u; s >>= 1u) {
        if (lid.x < s) {
            partial[lid.x] += partial[lid.x + s];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        t[i * params.r + j] = partial[0];
    }
}
