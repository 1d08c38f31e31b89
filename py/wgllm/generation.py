"""Text generation with MediaPipe's semantics, on any backend that can prefill and decode.

- The prompt is used as written (special tokens such as <|im_start|> in it are parsed), with BOS
  when the model's tokenizer asks for one; format chat turns with the model's template yourself,
  as with MediaPipe's LlmInference.
- max_tokens counts prompt + answer: a prompt that leaves no room for an answer is an error.
- Sampling: wgllm.sampling.SamplingParams (top-k and temperature as MediaPipe; top-p, min-p,
  penalties, logit_bias, logprobs as llama.cpp / OpenAI: see wgllm.sampling for the chain). The draw
  for the i-th generated token uses random_uniform(seed, i), so the same seed gives the same text.
- Generation stops at the model's end-of-generation tokens, at max_tokens, or at the first stop
  string in the decoded text (matched across token boundaries; it and what follows are not
  returned, and a listener never receives text that may still turn out to start one).
- A grammar (wgllm.grammar.JsonGrammar, from a response_format) constrains every step: its mask
  (wgllm.grammar_mask) leaves out the tokens that cannot continue a valid document, in the sampler
  itself (sample.wgsl's step 0, reference.apply_token_mask), and end-of-generation only once the
  document is whole; when nothing but the end may follow, generation stops without another step.
  The text then always parses and validates, unless max_tokens or a stop string cut it short
  (finish_reason "length" / a stop).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from wgllm import reference
from wgllm.grammar import JsonGrammar
from wgllm.grammar_mask import GrammarVocabulary, token_mask
from wgllm.model import Model
from wgllm.sampling import SamplingParams, StopFilter, check_stop

Listener = Callable[[str, bool], None]


class PromptTooLongError(ValueError):
    pass


class Session(Protocol):
    """One generation's state on a backend: the KV cache and the sampler settings. `sampled` lists
    what each step drew (reference.Sampled: with logprobs when the params ask for them)."""

    sampled: list

    def prefill(self, ids: list[int], mask: np.ndarray | None = None) -> int: ...

    def decode(self, token: int, mask: np.ndarray | None = None) -> int: ...


class ReferenceSession:
    """The numpy reference as a backend: logits on the CPU, sampled by reference.sample.
    Sampling options: top_k, temperature, seed and any other SamplingParams field."""

    def __init__(self, model: Model, *, top_k: int, temperature: float, seed: int, dtype=np.float32, lora=None, kv_dtype=None, **options):
        self.model, self.dtype = model, dtype
        self.params = SamplingParams(top_k=top_k, temperature=temperature, seed=seed, **options).checked(model.config.n_vocab)
        self.lora = lora  # a wgllm.lora.LoraAdapter applied on every step, or None
        self.cache = reference.KVCache(kv_dtype)  # kv_dtype np.float16: the GPU engine's f16 KV cache
        self.history: list[int] = []  # every id fed, for the penalties
        self.sampled: list[reference.Sampled] = []

    def _run(self, ids: list[int], mask) -> int:
        logits = reference.forward(self.model, ids, self.dtype, self.cache, self.lora)[-1]
        self.history.extend(ids)
        s = self.params.sample_reference(logits, len(self.sampled), self.history, mask)
        self.sampled.append(s)
        return s.token

    def prefill(self, ids: list[int], mask: np.ndarray | None = None) -> int:
        return self._run(ids, mask)

    def decode(self, token: int, mask: np.ndarray | None = None) -> int:
        return self._run([token], mask)


def grammar_vocabulary(tokenizer) -> GrammarVocabulary:
    """The tokenizer's GrammarVocabulary, made once per tokenizer (its tables take a moment for a
    large vocabulary) and kept on it."""
    vocab = getattr(tokenizer, "_grammar_vocabulary", None)
    if vocab is None:
        vocab = GrammarVocabulary.from_tokenizer(tokenizer)
        tokenizer._grammar_vocabulary = vocab
    return vocab


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


@dataclass
class Generation:
    """One answer: its text, the ids generated (an end-of-generation token excluded), what the
    sampler drew for each (reference.Sampled: logprobs when asked), and why it ended: "stop" (an
    end-of-generation token or a stop string), "length" (max_tokens) or "cancelled"."""

    text: str = ""
    tokens: list[int] = field(default_factory=list)
    sampled: list = field(default_factory=list)
    finish_reason: str = "length"
    stop: str | None = None  # the stop string that ended it
    prompt_tokens: int = 0


def run_generation(
    model: Model,
    session: Session,
    prompt_ids: list[int],
    max_tokens: int,
    listener: Listener | None = None,
    cancelled: Callable[[], bool] | None = None,
    stop: list[str] | None = None,
    grammar: JsonGrammar | None = None,
    max_new_tokens: int | None = None,
) -> Generation:
    """Prefill, then decode until an end-of-generation token, max_tokens (prompt and answer) or
    max_new_tokens (answer), a stop string, the end of the grammar's document or cancellation."""
    tok = model.tokenizer
    eog = set(tok.eog_ids)
    utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
    stops = StopFilter(check_stop(stop))
    out = Generation(prompt_tokens=len(prompt_ids))
    pieces: list[str] = []
    state = grammar.start() if grammar is not None else None
    vocab = grammar_vocabulary(tok) if grammar is not None else None

    def emit(text: str) -> None:
        if text:
            pieces.append(text)
            if listener:
                listener(text, False)

    def mask():
        return token_mask(state, vocab) if state is not None else None

    token = session.prefill(prompt_ids, mask())
    total = len(prompt_ids)
    while True:
        if token in eog:
            out.finish_reason = "stop"
            break
        if cancelled and cancelled():
            out.finish_reason = "cancelled"
            break
        out.tokens.append(token)
        out.sampled.append(session.sampled[len(out.tokens) - 1])
        emit(stops.push(utf8.decode(tok.token_bytes(token))))
        total += 1
        if stops.stopped is not None:
            out.finish_reason, out.stop = "stop", stops.stopped
            break
        if total >= max_tokens or (max_new_tokens is not None and len(out.tokens) >= max_new_tokens):
            break
        if state is not None:
            state = state.advance(tok.token_bytes(token))
            if state is None:  # the sampler drew a token its mask left out: a bug, never a silent wrong answer
                raise RuntimeError(f"token {token} does not continue the grammar's document: the mask was not applied")
            if state.is_accepting() and not state.can_continue():
                out.finish_reason = "stop"  # the document is whole and nothing may follow it
                break
        token = session.decode(token, mask())
    if stops.stopped is None:
        emit(stops.push(utf8.decode(b"", final=True)))
        emit(stops.flush())
    if listener:
        listener("", True)
    out.text = "".join(pieces)
    return out


def run_session(
    model: Model,
    session: Session,
    prompt_ids: list[int],
    max_tokens: int,
    listener: Listener | None = None,
    cancelled: Callable[[], bool] | None = None,
    stop: list[str] | None = None,
) -> str:
    """run_generation's text."""
    return run_generation(model, session, prompt_ids, max_tokens, listener, cancelled, stop).text


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
    stop: list[str] | None = None,
    **options,
) -> str:
    """Generate an answer to `prompt` with the numpy reference (and the LoraAdapter `lora`, if
    given); `listener(partial, done)` streams it. `options`: other SamplingParams fields."""
    check_sampling_options(max_tokens, top_k, temperature, seed)
    stop = check_stop(stop)
    session = ReferenceSession(model, top_k=top_k, temperature=temperature, seed=seed, dtype=dtype, lora=lora, **options)
    ids = encode_prompt(model, prompt, max_tokens)
    return run_session(model, session, ids, max_tokens, listener, stop=stop)
