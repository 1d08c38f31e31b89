"""Architecture knowledge for the converter: one module per family, registered here by llama.cpp name."""

from __future__ import annotations

from wgllm.arch import falcon, gemma, gpt2, llama, mistral, phi2, phi3, qwen, smollm3, stablelm
from wgllm.arch.base import TIED, ArchSpec, Dims, Group, HFConfig, Rule, expand
from wgllm.errors import ConversionError

ARCHITECTURES: dict[str, ArchSpec] = {
    spec.arch: spec
    for spec in (llama.SPEC, gemma.GEMMA, gemma.GEMMA2, gemma.GEMMA3, phi2.SPEC, falcon.SPEC, stablelm.SPEC, gpt2.SPEC, qwen.QWEN2, qwen.QWEN3, phi3.SPEC, smollm3.SPEC)
}
# Checkpoint families written as one of the architectures above (MistralForCausalLM -> llama).
VARIANTS: tuple[ArchSpec, ...] = (mistral.SPEC,)

# MediaPipe's converter model_type names (plus GPT2, LLAMA, QWEN2, QWEN3, PHI3, SMOLLM3 and MISTRAL) -> llama.cpp architecture.
MODEL_TYPES: dict[str, str] = {
    "GEMMA_2B": "gemma",
    "GEMMA_7B": "gemma",
    "GEMMA2_2B": "gemma2",
    "GEMMA3_1B": "gemma3",
    "PHI_2": "phi2",
    "FALCON_RW_1B": "falcon",
    "STABLELM_4E1T_3B": "stablelm",
    "GPT2": "gpt2",
    "LLAMA": "llama",
    "QWEN2": "qwen2",
    "QWEN3": "qwen3",
    "PHI3": "phi3",
    "SMOLLM3": "smollm3",
    "MISTRAL": "llama",
}


def _supported() -> str:
    return ", ".join(f"{s.arch} ({'/'.join(s.hf_architectures)})" for s in (*ARCHITECTURES.values(), *VARIANTS))


def architecture_for(cfg: HFConfig, model_type: str | None) -> ArchSpec:
    """The architecture config.json describes, checked against the model_type asked for (if any)."""
    hf_type = cfg.get("model_type")
    hf_archs = cfg.get("architectures") or []
    found = None
    for spec in (*ARCHITECTURES.values(), *VARIANTS):
        if hf_type in spec.hf_model_types or any(a in spec.hf_architectures for a in hf_archs):
            found = spec
            break
    if found is None:
        raise ConversionError(
            f"{cfg.path}: unsupported architecture (model_type {hf_type!r}, architectures {hf_archs}); supported: {_supported()}"
        )
    if model_type is not None:
        if model_type not in MODEL_TYPES:
            raise ConversionError(f"unknown model_type {model_type!r}; expected one of {', '.join(MODEL_TYPES)}")
        if MODEL_TYPES[model_type] != found.arch:
            raise ConversionError(
                f"model_type {model_type} is a {MODEL_TYPES[model_type]} model, but {cfg.path} describes "
                f"{found.arch} (model_type {hf_type!r}, architectures {hf_archs})"
            )
    return found


__all__ = ["ARCHITECTURES", "MODEL_TYPES", "VARIANTS", "TIED", "ArchSpec", "Dims", "Group", "HFConfig", "Rule", "architecture_for", "expand"]
