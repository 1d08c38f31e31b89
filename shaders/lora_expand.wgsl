// lora_expand: y += scale * t B^T, the second half of a LoRA update   ref: reference.lora_expand   grid: (ceil(n_out / WG_SIZE), n, 1)
// Host interface (after lora_shrink.wgsl has written t):
//   binding 0 params (uniform Params: n, n_out, r as u32, scale as f32), 1 t (n, r) f32,
//   2 b (n_out, r) f32, 3 y (n, n_out) f32, read and written in place (the base matmul's output).
//   scale = alpha / r (1 when the adapter's alpha is 0, as in llama.cpp).
override WG_SIZE: u32 = 64u;

struct Params {
    n: u32,     // rows (tokens)
    n_out: u32, // outputs of the adapted weight
    r: u32,     // LoRA rank
    scale: f32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> t: array<f32>;       // (n, r)
@group(0) @binding(2) var<storage, read> b: array<f32>;       // (n_out, r): lora_b as the GGUF stores it
@group(0) @binding(3) var<storage, read_write> y: array<f32>; // (n, n_out)

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let o = gid.x;
    let i = gid.y;
    if (o >= params.n_out || i >= params.n) {
        return;
    }
    let ts = i * params.r;
    let bs = o * params.r;
    var acc = 0.0;
    for (var j = 0u; j < params.r; j++) {
        acc = fma(t[ts + j], b[bs + j], acc);
    }
    y[i * params.n_out + o] += params.scale * acc;
}
