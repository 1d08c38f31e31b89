"""Sampling options: MediaPipe's (top_k, temperature, seed) and the rest of llama.cpp's / OpenAI's.

The chain, in llama.cpp's order (common/sampling.cpp), on the GPU (shaders/sample.wgsl) and in the
reference (reference.sample) alike:

1. logit_bias: logit[id] += bias (OpenAI's; values in [-100, 100]).
2. penalties over the last penalty_last_n ids fed to the model (the prompt's included, as llama.cpp's
   server; -1: the whole context, 0: none): for every id seen there, repetition_penalty divides a
   positive logit and multiplies one <= 0 (llama.cpp's), then count * frequency_penalty +
   presence_penalty is subtracted (OpenAI's formula, counted over the same window, as llama.cpp does).
3. top-k: the top_k largest logits (ties to the lower id). On the GPU at most MAX_TOP_K (64), its
   sampler's candidate list (the engines refuse more); top_k >= 1 as in MediaPipe (there is no "0 = whole vocabulary"): top-p and min-p
   choose among these candidates, so top_k = 64 leaves them the most room.
4. top-p: the shortest prefix of the candidates whose probability (softmax over the candidates at
   temperature 1, as llama.cpp) reaches top_p. 1 = off.
5. min-p: candidates whose probability is at least min_p times the best one's (temperature 1). 0 = off.
6. temperature: softmax(logits / temperature) over what is left, and the draw with
   random_uniform(seed, step), step = the index of the generated token.
top_k <= 1 or temperature == 0 is greedy: the largest logit after steps 1-2.

logprobs: the log-softmax over the whole vocabulary of the logits after steps 1-2 (bias and
penalties), before truncation and temperature: the distribution the model (as steered) gives, the
same whatever top_k/top_p/temperature are. llama.cpp's server reports the raw logits' softmax by
default (before bias and penalties) and the truncated, tempered one with post_sampling_probs;
this is neither, because one candidate list on the GPU serves both the draw and top_logprobs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np

from wgllm import reference

MAX_TOP_K = 64  # sample.wgsl's MAX_K
MAX_TOP_LOGPROBS = 20  # OpenAI's
MAX_STOP = 16  # stop strings (OpenAI takes 4; llama.cpp's server no fixed number)
MAX_STOP_CHARS = 256
MAX_LOGIT_BIAS = 1024  # entries
LOGIT_BIAS_LIMIT = 100.0  # OpenAI's range: [-100, 100]
DEFAULT_PENALTY_LAST_N = 64  # llama.cpp's


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.floating, np.integer)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class SamplingParams:
    top_k: int = 40
    temperature: float = 0.8
    seed: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    penalty_last_n: int = DEFAULT_PENALTY_LAST_N
    logit_bias: dict = field(default_factory=dict)  # token id -> bias
    logprobs: bool = False
    top_logprobs: int = 0

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @property
    def greedy(self) -> bool:
        return self.top_k <= 1 or self.temperature <= 0

    @property
    def penalized(self) -> bool:
        return self.penalty_last_n != 0 and (self.repetition_penalty != 1.0 or self.frequency_penalty != 0.0 or self.presence_penalty != 0.0)

    def checked(self, n_vocab: int | None = None, seed_name: str = "seed") -> "SamplingParams":
        """These options validated (each error names its field and what was expected), with
        logit_bias's keys as ints (a JSON object's "123" keys are accepted); n_vocab bounds its ids."""
        if not _is_int(self.top_k) or self.top_k < 1:
            raise ValueError(f"top_k must be an integer >= 1, got {self.top_k!r}")
        if not _is_number(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be a number >= 0, got {self.temperature!r}")
        if not _is_int(self.seed):
            raise ValueError(f"{seed_name} must be an integer, got {self.seed!r}")
        if not _is_number(self.top_p) or not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be a number in (0, 1], got {self.top_p!r}")
        if not _is_number(self.min_p) or not 0 <= self.min_p <= 1:
            raise ValueError(f"min_p must be a number in [0, 1], got {self.min_p!r}")
        if not _is_number(self.repetition_penalty) or self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be a number > 0 (1 = off), got {self.repetition_penalty!r}")
        for name in ("frequency_penalty", "presence_penalty"):
            v = getattr(self, name)
            if not _is_number(v) or not -2 <= v <= 2:
                raise ValueError(f"{name} must be a number in [-2, 2] (0 = off), got {v!r}")
        if not _is_int(self.penalty_last_n) or self.penalty_last_n < -1:
            raise ValueError(f"penalty_last_n must be an integer >= -1 (-1: the whole context, 0: off), got {self.penalty_last_n!r}")
        if not isinstance(self.logprobs, bool):
            raise ValueError(f"logprobs must be true or false, got {self.logprobs!r}")
        if not _is_int(self.top_logprobs) or not 0 <= self.top_logprobs <= MAX_TOP_LOGPROBS:
            raise ValueError(f"top_logprobs must be an integer in [0, {MAX_TOP_LOGPROBS}], got {self.top_logprobs!r}")
        if self.top_logprobs and not self.logprobs:
            raise ValueError(f"top_logprobs = {self.top_logprobs} needs logprobs = True")
        bias = check_logit_bias(self.logit_bias, n_vocab)
        out = SamplingParams(**{f: getattr(self, f) for f in self.names()})
        out.logit_bias = bias
        return out

    def counts(self, history) -> dict[int, int]:
        """The penalty window's counts (empty when no penalty is on)."""
        return reference.penalty_counts(history, self.penalty_last_n) if self.penalized else {}

    def adjust_entries(self, history) -> np.ndarray:
        """sample.wgsl's Adjust entries (id, penalized, bias, sub as f32 bits), one per id that has a
        logit_bias or a count in the penalty window, by id: (n, 4) uint32."""
        counts = self.counts(history)
        ids = sorted(set(counts) | set(self.logit_bias))
        out = np.zeros((len(ids), 4), np.uint32)
        for row, i in zip(out, ids):
            n = counts.get(i, 0)
            row[0], row[1] = i, 1 if n > 0 else 0
            row[2:] = np.array([self.logit_bias.get(i, 0.0), reference.penalty_offset(n, self.frequency_penalty, self.presence_penalty)], np.float32).view(np.uint32)
        return out

    def sample_reference(self, logits: np.ndarray, step: int, history, mask: np.ndarray | None = None) -> reference.Sampled:
        """reference.sample with these options (and a grammar's `mask`), the draw random_uniform(seed, step)."""
        return reference.sample(
            logits,
            top_k=self.top_k,
            temperature=self.temperature,
            u=reference.random_uniform(self.seed, step),
            top_p=self.top_p,
            min_p=self.min_p,
            logit_bias=self.logit_bias,
            counts=self.counts(history),
            repetition_penalty=self.repetition_penalty,
            frequency_penalty=self.frequency_penalty,
            presence_penalty=self.presence_penalty,
            logprobs=self.logprobs,
            top_logprobs=self.top_logprobs,
            mask=mask,
        )


def mask_words(mask: np.ndarray) -> np.ndarray:
    """A boolean token mask as sample.wgsl's bits: bit i % 32 of word i // 32 is id i (uint32)."""
    words = -(-mask.shape[0] // 32)
    bits = np.zeros(words * 32, dtype=bool)
    bits[: mask.shape[0]] = mask
    return np.packbits(bits.reshape(words, 4, 8), axis=2, bitorder="little").reshape(words * 4).view("<u4")


def check_logit_bias(bias, n_vocab: int | None) -> dict[int, float]:
    if bias is None:
        return {}
    if not isinstance(bias, dict):
        raise ValueError(f"logit_bias must be a mapping of token id to bias, got {type(bias).__name__}")
    if len(bias) > MAX_LOGIT_BIAS:
        raise ValueError(f"logit_bias has {len(bias)} entries, at most {MAX_LOGIT_BIAS} are allowed")
    out: dict[int, float] = {}
    for key, value in bias.items():
        i = int(key) if isinstance(key, str) and key.strip().isdigit() else key
        if not _is_int(i) or i < 0 or (n_vocab is not None and i >= n_vocab):
            where = f"0..{n_vocab - 1}" if n_vocab is not None else "an integer >= 0"
            raise ValueError(f"logit_bias: token id {key!r} is outside the vocabulary (expected {where})")
        if not _is_number(value) or not -LOGIT_BIAS_LIMIT <= value <= LOGIT_BIAS_LIMIT:
            raise ValueError(f"logit_bias[{key!r}] must be a number in [-100, 100], got {value!r}")
        out[int(i)] = float(value)
    return out


def check_stop(stop) -> list[str]:
    """The stop strings as a list (one string is a list of one)."""
    if stop is None:
        return []
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, (list, tuple)):
        raise ValueError(f"stop must be a string or a list of strings, got {type(stop).__name__}")
    if len(stops) > MAX_STOP:
        raise ValueError(f"stop has {len(stops)} strings, at most {MAX_STOP} are allowed")
    for s in stops:
        if not isinstance(s, str) or not s or len(s) > MAX_STOP_CHARS:
            raise ValueError(f"stop strings must be non-empty strings of at most {MAX_STOP_CHARS} characters, got {s!r}")
    return list(stops)


class StopFilter:
    """Cuts the streamed text at the first stop string, which may span token boundaries; the stop
    string and what follows are never returned. Text that may still become the start of a stop
    string (the longest suffix that is a prefix of one) is held back until it cannot."""

    def __init__(self, stops: list[str]):
        self.stops = stops
        self.held = ""
        self.stopped: str | None = None  # the stop string found

    def push(self, piece: str) -> str:
        """The text that is safe to pass on after `piece`."""
        text = self.held + piece
        hits = [(i, s) for s in self.stops if (i := text.find(s)) >= 0]
        if hits:
            at, self.stopped = min(hits)
            self.held = ""
            return text[:at]
        keep = 0
        for s in self.stops:
            for n in range(min(len(s) - 1, len(text)), keep, -1):
                if text.endswith(s[:n]):
                    keep = n
                    break
        self.held = text[len(text) - keep :]
        return text[: len(text) - keep]

    def flush(self) -> str:
        """At the end of generation: what was held back (it never became a stop string)."""
        held, self.held = self.held, ""
        return held
