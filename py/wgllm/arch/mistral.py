"""mistral (MistralForCausalLM: Mistral-7B v0.1/v0.2/v0.3): a llama file, as llama.cpp's convert_hf_to_gguf
writes MistralForCausalLM (it registers it with LlamaForCausalLM): llama's tensors, Q/K row permutation
and RoPE. Mistral-7B v0.1 attends over a sliding window of 4096 tokens on every layer: the config's
sliding_window is written as llama.attention.sliding_window, and a file that sets it slides on every
layer in the reference and both engines; a null sliding_window (v0.2, v0.3) writes no key.
"""

from __future__ import annotations

from wgllm.arch import llama
from wgllm.arch.base import ArchSpec, Dims, HFConfig

read_config = llama.read_config


def _window(cfg: HFConfig) -> int:
    window = cfg.data.get("sliding_window")
    if window is None:
        return 0
    if not isinstance(window, int) or isinstance(window, bool) or window <= 0:
        raise cfg.unsupported(f"sliding_window = {window!r}", "expected a positive integer or null")
    return window


def check(cfg: HFConfig) -> Dims:
    d = llama.read_config(cfg)
    _window(cfg)  # refused before anything is written
    return d


def metadata(cfg: HFConfig, d: Dims) -> dict:
    m = llama.metadata(cfg, d)
    if _window(cfg):
        m["llama.attention.sliding_window"] = _window(cfg)
    return m


SPEC = ArchSpec(
    arch="llama",
    hf_model_types=("mistral",),
    hf_architectures=("MistralForCausalLM",),
    read_config=check,
    metadata=metadata,
    weight_map=llama.weight_map,
    transform=llama.transform,
    buffers=("rotary_emb.inv_freq",),
    extra_tensors=llama.extra_tensors,
)
