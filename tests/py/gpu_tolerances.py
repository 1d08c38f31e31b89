"""Tolerances of the GPU kernels against wgllm.reference: the one table the shader tests read.

Each entry is (rtol, atol_rel): a GPU value g passes against the reference value r when
|g - r| <= rtol * |r| + max(atol_rel * max|reference output|, ATOL_FLOOR). The absolute part
is scaled by the output's own magnitude so that elements that cancel to near zero (a weighted average of signed
values, 1 + tanh(z) for very negative z) are judged against the size of the whole result.
"""

from __future__ import annotations

# Below this, values count as zero: WGSL lets f32 division go to 0 when the divisor exceeds 2^126
# (swiglu's silu(-100) = -100 / (1 + e^100) is -0 on the GPU, -3.7e-42 in numpy).
ATOL_FLOOR = 1e-30

F32 = (1e-5, 1e-6)

# rope computes its angle pos / pos_scale * base^(-2i/n_rot) in f32, as llama.cpp and transformers
# do, so the angle carries a few ulp of |theta| (2^-24 per rounding) and the rotated values an
# absolute error of about |x| * |theta| * 2^-23 on top of F32 (reference.rope works in float64).
ROPE_ATOL_PER_RADIAN = 2.5e-7
F16 = (1e-2, 1e-3)

TOLERANCES: dict[str, tuple[float, float]] = {
    "embedding": F32,
    "rms_norm": F32,
    "layer_norm": F32,
    "rope": F32,
    "softcap": F32,
    "gelu_tanh": F32,
    "gelu_erf": F32,
    "swiglu": F32,
    "geglu": F32,
    # Each score is a sequential f32 dot product of head_dim terms (numpy sums pairwise) whose error
    # exp() turns into a relative weight error: measured up to 2.4x the float32 reference's own
    # distance from float64 (1.7e-6 of max|out| at head_dim 256 with soft-capping).
    "attention": (1e-5, 4e-6),
    "kv_store": (0.0, 0.0),  # a copy: bit exact
    # Quantised weights are dequantised exactly (same f32 products as gguf.quants); what is left is
    # f32 accumulation over k against a float64 reference.
    "matmul": (1e-5, 1e-5),
    "embedding_q": F32,
}

# Whole models, GPU engine vs reference.forward on the same GGUF: max |g - r| / max |r| over the
# logits. Every kernel is an f32 kernel within ~1e-5 of its op; tens of them in sequence stay
# well inside 1e-4 (measured ~3e-7 relative on the tiny models at Q8_0).
MODEL_LOGITS_REL = 1e-4

# The engine with an f16 KV cache (shader-f16, not force_f32) against the plain f32 reference: K and
# V rounded to f16 (relative 2^-11) move the logits. Measured max |g - r| / max |r|: tiny models at
# F32 and Q8_0 (test_gpu_engine.py, 24 tokens) up to 5.8e-4 (Gemma-2, whose attention soft-cap of
# 2.0 sharpens scores), 1.5e-5 to 2.7e-4 for the others; SmolLM2 Q4_1 and Gemma-3 Q4_K_M (5 and 64
# tokens) 2.0e-4 to 3.6e-4. Against reference.forward with a float16 KV cache the tiny models stay
# within MODEL_LOGITS_REL (up to 6.1e-5), but the real files do not (0.6e-4 to 2.1e-4; 1.6e-4 for the
# CLI test's 5 tokens): a K or V element whose f32 value lies near an f16 rounding boundary rounds the
# other way on the GPU, a whole f16 ulp, and tens of layers carry it on. Real files with an f16 cache
# are therefore held to this bound (and to equal top-1 and greedy tokens).
KV_F16_LOGITS_REL = 1e-3
