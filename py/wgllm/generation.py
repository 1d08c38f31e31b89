"""Text generation with MediaPipe's semantics, on any backend that can prefill and decode.

- The prompt is used as written (special tokens such as <|im_start|> in it are parsed), with BOS
  when the model's tokenizer asks for one; format chat turns with the model's template yourself,
  as with MediaPipe's LlmInference.
- max_tokens counts prompt + answer: a prompt that leaves no room for an answer is an error.
- Sampling: top-k, then temperature; top_k == 1 or temperature == 0 is greedy; the draw for the
  i-th generated token uses random_uniform(seed, i), so the same seed gives the same text.
- Generation stops at the model's end-of-generation tokens or at max_tokens.
"""

from __future__ import annotations

import codecs
from typing import Callable, Protocol

import numpy as np

from wgllm import reference
from wgllm.model import Model

Listener = Callable[[str, bool], None]


class PromptTooLongError(ValueError):
    pass


class Session(Protocol):
    """One generation's state on a backend: the KV cache and the sampler settings."""

    def prefill(self, ids: list[int]) -> int: ...

    def decode(self, token: int) -> int: ...


class ReferenceSession:
    """The numpy reference as a backend: logits on the CPU, sampled by reference.sample_top_k."""

    def __init__(self, model: Model, *, top_k: int, temperature: float, seed: int, dtype=np.float32, lora=None, kv_dtype=None):
        self.model, self.top_k, self.temperature, self.seed, self.dtype = model, top_k, temperature, seed, dtype
        self.lora = lora  # a wgllm.lora.LoraAdapter applied on every step, or None
        self.cache = reference.KVCache(kv_dtype)  # kv_dtype np.float16: the GPU engine's f16 KV cache
        self.generated = 0

    def _sample(self, logits: np.ndarray) -> int:
        u = reference.random_uniform(self.seed, self.generated)
        self.generated += 1
        return reference.sample_top_k(logits, self.top_k, self.temperature, u)

    def prefill(self, ids: list[int]) -> int:
        return self._sample(reference.forward(self.model, ids, self.dtype, self.cache, self.lora)[-1])

    def decode(self, token: int) -> int:
        return self._sample(reference.forward(self.model, [token], self.dtype, self.cache, self.lora)[-1])


def check_sampling_options(max_tokens: int, top_k: int, temperature: float, seed: int) -> None:
    if not isinstance(max_tokens, int) or max_tokens < 1:
        raise ValueError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    if not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be an integer >= 1, got {top_k!r}")
    if not isinstance(temperature, (int, float)) or temperature < 0 or temperature != temperature:
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
    if not isinstance(seed, int):
        raise ValueError(f"random_seed must be an integer, got {seed!r}")


def encode_prompt(model: Model, prompt: str, max_tokens: int) -> list[int]:
    ids = model.tokenizer.encode(prompt, add_special=True, parse_special=True)
    if not ids:
        raise ValueError("the prompt is empty and the model adds no BOS token: nothing to generate from")
    if len(ids) >= max_tokens:
        raise PromptTooLongError(
            f"Input is too long: the prompt has {len(ids)} tokens and max_tokens is {max_tokens}; "
            "max_tokens counts the prompt and the answer together"
        )
    return ids


def run_session(
    model: Model,
    session: Session,
    prompt_ids: list[int],
    max_tokens: int,
    listener: Listener | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> str:
    """Prefill, then decode until an end-of-generation token, max_tokens, or cancellation."""
    tok = model.tokenizer
    eog = set(tok.eog_ids)
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pieces: list[str] = []
    token = session.prefill(prompt_ids)
    total = len(prompt_ids)
    while token not in eog and not (cancelled and cancelled()):
        piece = utf8.decode(tok.token_bytes(token))
        total += 1
        if piece:
            pieces.append(piece)
            if listener:
                listener(piece, False)
        if total >= max_tokens:
            break
        token = session.decode(token)
    tail = utf8.decode(b"", final=True)
    if tail:
        pieces.append(tail)
    if listener:
        listener(tail, True)
    return "".join(pieces)


def generate(
    model: Model,
    prompt: str,
    *,
    max_tokens: int = 512,
    top_k: int = 40,
    temperature: float = 0.8,
    seed: int = 0,
    listener: Listener | None = None,
    dtype=np.float32,
    lora=None,
) -> str:
    """Generate an answer to `prompt` with the numpy reference (and the LoraAdapter `lora`, if
    given); `listener(partial, done)` streams it."""
    check_sampling_options(max_tokens, top_k, temperature, seed)
    ids = encode_prompt(model, prompt, max_tokens)
    session = ReferenceSession(model, top_k=top_k, temperature=temperature, seed=seed, dtype=dtype, lora=lora)
    return run_session(model, session, ids, max_tokens, listener)
