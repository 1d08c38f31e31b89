"""Tiny random-weight transformers models of the ten architectures, saved like Hub checkpoints.

Every weight is redrawn from a fixed seed (HF initialises norms to ones/zeros and biases to zero,
which would hide a missing +1, bias or reorder): norm weights and biases are random, matrices
are scaled so activations stay O(1) and Gemma-2's soft-capping bites. Sliding windows (4) are
shorter than the test sequences. Each model is saved with `save_pretrained` (safetensors) beside a
tokenizer trained here: SentencePiece for llama and the Gemmas, byte-level BPE (`tokenizers`) for
the others (Qwen's splitting with Qwen2's regex first); the model's vocab_size is the tokenizer's size.

`tiny_model(arch)` builds once per test process, under a temporary folder removed at exit.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import transformers

ARCHS = ("llama", "gemma", "gemma2", "gemma3", "phi2", "falcon", "stablelm", "gpt2", "qwen2", "qwen3", "phi3", "smollm3")
# Llama-3.x's RoPE scaling on the tiny Llama (head_dim 16): an original context of 32 positions puts its
# frequencies in all three bands (kept, divided by the factor, blended) within a 24-token prompt.
LLAMA3_ROPE = {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 32}
QWEN_ARCHS = ("qwen2", "qwen3")  # their byte-level BPE splits with Qwen2's regex first, as Qwen's tokenizer.json does
SPM_ARCHS = ("llama", "gemma", "gemma2", "gemma3", "mistral")  # mistral: not in ARCHS (test_mistral.py, a llama file)

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "A small model runs on the graphics card of a laptop, inside the browser.",
    "Quantised weights take less memory: eight bits, or four bits for every weight.",
    "Attention looks back over the tokens of the context window; the sliding window looks back less far.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 and some punctuation: (a, b) [c; d] {e: f}!",
    "She sells sea shells by the sea shore, and the shells she sells are sea shells.",
    "How much wood would a woodchuck chuck if a woodchuck could chuck wood?",
    "Peter Piper picked a peck of pickled peppers from the garden in the morning.",
    "Transformers turn tokens into vectors, mix them with attention and feed-forward layers.",
    "The converter writes one file; the reference reads it back and compares the logits.",
]


@dataclass(frozen=True)
class TinyModel:
    arch: str
    folder: Path  # config.json, model.safetensors, tokenizer files
    model: torch.nn.Module  # the HF model (float32, eager attention, eval mode)
    vocab_file: Path  # what to pass as vocab_model_file


def _spm_tokenizer(folder: Path, gemma: bool) -> Path:
    import sentencepiece as spm

    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(_CORPUS * 4) + "\n")
    ids = dict(pad_id=0, eos_id=1, bos_id=2, unk_id=3) if gemma else dict(unk_id=0, bos_id=1, eos_id=2, pad_id=-1)
    spm.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(folder / "tokenizer"),
        model_type="bpe",
        vocab_size=320,
        byte_fallback=True,
        character_coverage=1.0,
        hard_vocab_limit=False,
        minloglevel=2,
        num_threads=1,
        **ids,
    )
    corpus.unlink()
    (folder / "tokenizer.vocab").unlink()
    return folder / "tokenizer.model"


def _bpe_tokenizer(folder: Path, qwen: bool = False) -> Path:
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if qwen:
        from wgllm.vocab import _HF_REGEX_QWEN2

        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(_HF_REGEX_QWEN2), behavior="isolated"), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
        )
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "GPT2Tokenizer", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"})
    )
    return folder


def _vocab_size(arch: str, vocab_file: Path) -> int:
    if arch in SPM_ARCHS:
        import sentencepiece as spm

        return spm.SentencePieceProcessor(model_file=str(vocab_file)).get_piece_size()
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(vocab_file / "tokenizer.json")).get_vocab_size()


def config_for(arch: str, vocab_size: int, **overrides) -> transformers.PretrainedConfig:
    config = _base_config(arch, vocab_size)
    if "rope_parameters" in overrides:  # built anew: the model reads RoPE settings as the config's constructor set them up
        return type(config).from_dict({**config.to_dict(), **overrides})
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


def _base_config(arch: str, vocab_size: int) -> transformers.PretrainedConfig:
    common = dict(vocab_size=vocab_size, hidden_size=64, num_attention_heads=4, max_position_embeddings=128)
    if arch == "llama":
        return transformers.LlamaConfig(
            **common, intermediate_size=128, num_hidden_layers=2, num_key_value_heads=2, rms_norm_eps=1e-5,
            tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        )
    if arch == "gemma":
        # head_dim 32 != 64/4 (like Gemma's 256): key_length/value_length must be written
        return transformers.GemmaConfig(
            **common, intermediate_size=128, num_hidden_layers=2, num_key_value_heads=1, head_dim=32, rms_norm_eps=1e-6,
            hidden_act="gelu_pytorch_tanh",
        )
    if arch == "gemma2":
        return transformers.Gemma2Config(
            **common, intermediate_size=128, num_hidden_layers=3, num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16,
            sliding_window=4, attn_logit_softcapping=2.0, final_logit_softcapping=3.0, rms_norm_eps=1e-6,
        )
    if arch == "gemma3":
        return transformers.Gemma3TextConfig(
            **common, intermediate_size=128, num_hidden_layers=7, num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16,
            sliding_window=4, rms_norm_eps=1e-6,
            rope_parameters={
                "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1000000.0},
                "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
            },
        )
    if arch == "phi2":
        return transformers.PhiConfig(
            **common, intermediate_size=128, num_hidden_layers=2, num_key_value_heads=2, layer_norm_eps=1e-5,
            tie_word_embeddings=False, rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5},
        )
    if arch == "falcon":
        return transformers.FalconConfig(
            vocab_size=vocab_size, hidden_size=64, num_attention_heads=4, num_hidden_layers=2, num_kv_heads=4,
            alibi=True, bias=True, multi_query=False, parallel_attn=False, new_decoder_architecture=False,
            layer_norm_epsilon=1e-5, tie_word_embeddings=True,
        )
    if arch == "stablelm":
        # intermediate 80: ffn_down's rows are not a multiple of 32, so it stays F16 when quantising
        return transformers.StableLmConfig(
            **common, intermediate_size=80, num_hidden_layers=2, num_key_value_heads=2, layer_norm_eps=1e-5,
            use_qkv_bias=True, tie_word_embeddings=False,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
        )
    if arch == "gpt2":
        return transformers.GPT2Config(
            vocab_size=vocab_size, n_embd=64, n_layer=2, n_head=4, n_positions=64, layer_norm_epsilon=1e-5, bos_token_id=0, eos_token_id=0
        )
    if arch == "qwen2":  # tied embeddings, as Qwen2.5-0.5B's
        return transformers.Qwen2Config(
            **common, intermediate_size=128, num_hidden_layers=2, num_key_value_heads=2, rms_norm_eps=1e-6,
            tie_word_embeddings=True, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        )
    if arch == "qwen3":  # head_dim 32 != 64/4 (Qwen3-0.6B: 128 != 1024/16) and an untied lm_head
        return transformers.Qwen3Config(
            **common, intermediate_size=128, num_hidden_layers=2, num_key_value_heads=2, head_dim=32, rms_norm_eps=1e-6,
            tie_word_embeddings=False, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        )
    if arch == "phi3":  # as Phi-4-mini: partial rotary (0.75), tied embeddings; LongRoPE and SWA: PHI3_LONGROPE
        return transformers.Phi3Config(
            **common, intermediate_size=128, num_hidden_layers=2, num_key_value_heads=2, rms_norm_eps=1e-5, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.75}, pad_token_id=0, bos_token_id=0, eos_token_id=0,
        )
    if arch == "smollm3":  # 5 layers: layer 3 is NoPE (every 4th), tied embeddings as SmolLM3-3B's
        return transformers.SmolLM3Config(
            **common, intermediate_size=128, num_hidden_layers=5, num_key_value_heads=2, rms_norm_eps=1e-6, tie_word_embeddings=True,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, no_rope_layer_interval=4, use_sliding_window=False,
            pad_token_id=0, bos_token_id=0, eos_token_id=0,
        )
    if arch == "mistral":  # Mistral-7B v0.1's sliding window on every layer, 5 here, shorter than the prompts
        return transformers.MistralConfig(
            **common, intermediate_size=128, num_hidden_layers=2, num_key_value_heads=2, rms_norm_eps=1e-5, sliding_window=5,
            tie_word_embeddings=False, rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        )
    raise ValueError(f"no tiny config for {arch}")


# Phi-3.5-mini's features on the tiny phi3 (overrides for tiny_model): LongRoPE with 6 factors per set
# (12 rotary dims of 16) and an original context of 8 (so 128 / 8 gives an attention factor of
# sqrt(1 + ln 16 / ln 8) ~ 1.53), every layer sliding with a window of 5, an untied lm_head.
PHI3_LONGROPE = dict(
    rope_parameters={
        "rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.75,
        "short_factor": [1.0, 1.3, 1.9, 2.6, 4.1, 7.5], "long_factor": [1.5, 2.25, 4.0, 9.0, 20.0, 41.0],
    },
    original_max_position_embeddings=8, sliding_window=5, tie_word_embeddings=False,
)


_MODEL_CLASSES = {
    "llama": "LlamaForCausalLM",
    "gemma": "GemmaForCausalLM",
    "gemma2": "Gemma2ForCausalLM",
    "gemma3": "Gemma3ForCausalLM",
    "phi2": "PhiForCausalLM",
    "falcon": "FalconForCausalLM",
    "stablelm": "StableLmForCausalLM",
    "gpt2": "GPT2LMHeadModel",
    "qwen2": "Qwen2ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "phi3": "Phi3ForCausalLM",
    "smollm3": "SmolLM3ForCausalLM",
    "mistral": "MistralForCausalLM",
}


def randomise(model: torch.nn.Module, arch: str, seed: int) -> None:
    """Redraw every parameter: norms around their neutral value, biases around 0, matrices ~ 1/sqrt(fan_in)."""
    g = torch.Generator().manual_seed(seed)
    gemma = arch.startswith("gemma")
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if p.ndim == 1:
                if name.endswith("bias"):
                    p.copy_(0.2 * noise)
                else:  # a norm weight; Gemma's are used as 1 + w
                    p.copy_((0.0 if gemma else 1.0) + 0.3 * noise)
            elif any(s in name for s in ("embed_tokens", "word_embeddings", "wte")):
                p.copy_(noise)
            elif "wpe" in name:
                p.copy_(0.3 * noise)
            else:
                fan_in = p.shape[0] if arch == "gpt2" else p.shape[1]  # GPT-2's Conv1D is (in, out)
                p.copy_(noise / fan_in**0.5)


def build_tiny_model(arch: str, folder: Path, seed: int = 0, **overrides) -> TinyModel:
    folder.mkdir(parents=True, exist_ok=True)
    vocab_file = _spm_tokenizer(folder, arch.startswith("gemma")) if arch in SPM_ARCHS else _bpe_tokenizer(folder, arch in QWEN_ARCHS)
    config = config_for(arch, _vocab_size(arch, vocab_file), **overrides)
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = getattr(transformers, _MODEL_CLASSES[arch])(config).float().eval()
    randomise(model, arch, seed)
    model.save_pretrained(folder)
    return TinyModel(arch, folder, model, vocab_file)


_ROOT: Path | None = None
_CACHE: dict[tuple, TinyModel] = {}


def tiny_model(arch: str, **overrides) -> TinyModel:
    """The tiny `arch` model (config fields changed by `overrides`), built once per process."""
    global _ROOT
    key = (arch, json.dumps(overrides, sort_keys=True))
    if key not in _CACHE:
        if _ROOT is None:
            _ROOT = Path(tempfile.mkdtemp(prefix="wgllm-tiny-"))
            atexit.register(shutil.rmtree, _ROOT, True)
        # a dict-valued override (rope_parameters) is named by a digest of its JSON
        suffix = "".join(
            f"-{k}{hashlib.sha256(json.dumps(v, sort_keys=True).encode()).hexdigest()[:8] if isinstance(v, dict) else v}" for k, v in sorted(overrides.items())
        )
        _CACHE[key] = build_tiny_model(arch, _ROOT / f"tiny-{arch}{suffix}", **overrides)
    return _CACHE[key]


def convert_tiny(arch: str, bits: int, out: Path, **overrides) -> Path:
    """The tiny `arch` model converted to `out` with every quantisation group at `bits`."""
    from wgllm.convert import ConversionConfig, convert_checkpoint

    folder = str(tiny_model(arch, **overrides).folder)
    convert_checkpoint(
        ConversionConfig(folder, "safetensors", output_file=str(out), attention_quant_bits=bits, feedforward_quant_bits=bits, embedding_quant_bits=bits)
    )
    return out


def copy_tokenizer(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.model", "tokenizer.json", "tokenizer_config.json"):
        if (src / name).is_file():
            shutil.copy(src / name, dst / name)


def gguf_without(src: Path, dst: Path, drop: str, replace: dict[str, np.ndarray] | None = None) -> Path:
    """A copy of the F32/F16 GGUF `src` without the tensor `drop` ("" drops none) and with the tensors
    in `replace` replaced by those arrays (a file the loaders must refuse)."""
    import gguf

    r = gguf.GGUFReader(src)
    assert drop == "" or drop in {t.name for t in r.tensors}, drop
    replace = replace or {}
    w = gguf.GGUFWriter(str(dst), r.fields["general.architecture"].contents())
    for f in r.fields.values():
        if f.name.startswith("GGUF.") or f.name == "general.architecture":
            continue
        w.add_key_value(f.name, f.contents(), f.types[0], sub_type=f.types[-1] if f.types[0] == gguf.GGUFValueType.ARRAY else None)
    for t in r.tensors:
        if t.name != drop:
            w.add_tensor(t.name, replace.get(t.name, np.array(t.data)))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return dst
