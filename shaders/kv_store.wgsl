// kv_store: dst[dst_offset + t * dst_stride + c] = src[src_offset + t * src_stride + c], c < row_len   ref: reference.forward's KVCache append (np.concatenate)   grid: (ceil(row_len / WG_SIZE), n, 1)
// Copies this step's n rows of K or V (e.g. V straight out of a fused QKV buffer) into the KV cache
// at row m: dst_offset = m * row_len. Offsets and strides in elements.
// kv_t is the cache's element type: f32, or f16 in the loaders' "f16 KV" variant (the one place
// shader text is varied: they prepend `enable f16;` and make the alias below f16; see runtime.py).
alias kv_t = f32;
override WG_SIZE: u32 = 256u;

struct Params {
    row_len: u32,
    src_stride: u32,
    src_offset: u32,
    dst_stride: u32,
    dst_offset: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;         // (n, row_len) at src_offset + t * src_stride
@group(0) @binding(2) var<storage, read_write> dst: array<kv_t>;  // (max_tokens, row_len) at dst_offset + t * dst_stride

@compute @workgroup_size(WG_SIZE)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.x * WG_SIZE + lid.x;
    let t = wid.y;
    if (c < params.row_len) {
        dst[params.dst_offset + t * params.dst_stride + c] = kv_t(src[params.src_offset + t * params.src_stride + c]);
    }
}
