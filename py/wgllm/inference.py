"""LlmInference: the public Python API, with the semantics of MediaPipe's LLM Inference task.

    with LlmInference.create_from_model_path("model.gguf") as llm:
        print(llm.generate_response("The capital of France is"))

backend "gpu" runs on WebGPU through wgpu-py; "reference" on the numpy reference transformer.

LoRA, as in MediaPipe: declare the ranks at creation (lora_ranks=[4]), load adapters
(GGUF LoRA files, `wgllm convert --lora-ckpt ...`) with load_lora_model, pass the handle per call:

    llm = LlmInference.create_from_options("model.gguf", lora_ranks=[4])
    lora = llm.load_lora_model("adapter.gguf")
    llm.generate_response("Hello", lora)   # with the adapter; without it on the next call

Sampling extras beyond MediaPipe's top_k / temperature / random_seed (wgllm.sampling has the chain
and its order): top_p, min_p, repetition_penalty, frequency_penalty, presence_penalty,
penalty_last_n, logit_bias ({token id: bias}), logprobs / top_logprobs (then each answer's
per-token logprobs are in last_generations), and stop (strings that end the answer, not returned).
OpenAI's `seed` is random_seed and its `n` is num_responses: generate_responses draws num_responses
answers, the i-th with seed random_seed + i, one after another (each with the whole max_tokens).

Structured output: response_format, OpenAI's ({"type": "json_object"} or {"type": "json_schema",
"json_schema": {"schema": {...}, "strict": true}}), constrains decoding so that the answer parses
and validates (wgllm.grammar; the mask is applied in the sampler).

`generate` is the per-call form the OpenAI API uses: any of these options for one call (the
instance's otherwise), the prompt as text or ids, n answers, max_new_tokens, a cancel callable,
and Generation objects back (text, tokens, logprobs, finish_reason, prompt_tokens).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from wgllm import generation
from wgllm.generation import Generation, Listener, PromptTooLongError
from wgllm.grammar import JsonGrammar, grammar_for_response_format
from wgllm.model import Model, load_model
from wgllm.sampling import SamplingParams, check_stop

BUSY_MESSAGE = "Previous invocation or loading is still ongoing."
LORA_BUSY_MESSAGE = "Cannot load LoRA model while loading or processing."
LORA_OWNER_MESSAGE = "The LoRA model was not loaded by this LLM Inference task."
_BACKENDS = ("gpu", "reference")
MAX_N = 16  # answers per call
_UNSET = object()


@dataclass
class CheckedCall:
    """A generate call's options, checked (LlmInference.check): what the answers are drawn with."""

    ids: list[int]  # the prompt's tokens
    params: SamplingParams  # seed: the first answer's (the i-th draws with seed + i)
    stops: list[str]
    grammar: JsonGrammar | None
    n: int
    max_new_tokens: int | None


class LoraModel:
    """A LoRA adapter loaded by one LlmInference (MediaPipe's LoraModel): pass it to generate_response."""

    def __init__(self, owner: "LlmInference", adapter, gpu=None):
        self.owner, self.adapter, self._gpu = owner, adapter, gpu

    @property
    def rank(self) -> int:
        return self.adapter.rank

    @property
    def path(self):
        return self.adapter.path


class LlmInference:
    def __init__(
        self,
        model: Model,
        *,
        max_tokens: int,
        top_k: int,
        temperature: float,
        random_seed: int,
        lora_ranks: list[int] | None,
        num_responses: int,
        force_f32: bool,
        backend: str,
        kernels: str | None = None,
        sampling: SamplingParams | None = None,
        stop: list[str] | None = None,
        response_format: dict | None = None,
    ):
        self.model = model
        self.max_tokens, self.top_k, self.temperature, self.random_seed = max_tokens, top_k, temperature, random_seed
        # the extra sampling options (top_k, temperature and seed above are MediaPipe's and win)
        self.sampling = sampling or SamplingParams()
        self.stop = list(stop or [])
        self.response_format = response_format
        self.grammar: JsonGrammar | None = grammar_for_response_format(response_format)
        self.last_generations: list[Generation] = []  # the last call's answers: tokens, logprobs, finish reasons
        self.lora_ranks = list(lora_ranks or [])
        self.num_responses, self.force_f32, self.backend = num_responses, force_f32, backend
        self._busy = threading.Lock()
        self._cancel = threading.Event()
        self._engine = None
        if backend == "gpu":
            from wgllm.gpu.engine import GpuEngine  # noqa: PLC0415  (imports wgpu only when asked)

            self._engine = GpuEngine(model, max_tokens=max_tokens, force_f32=force_f32, lora_ranks=self.lora_ranks, kernels=kernels)

    # -- creation ------------------------------------------------------------------------------
    @classmethod
    def create_from_options(
        cls,
        model_path: str,
        max_tokens: int = 512,
        top_k: int = 40,
        temperature: float = 0.8,
        random_seed: int = 0,
        lora_ranks: list[int] | None = None,
        num_responses: int = 1,
        force_f32: bool = False,
        backend: str = "gpu",
        kernels: str | None = None,
        stop: list[str] | str | None = None,
        response_format: dict | None = None,
        **sampling,
    ) -> "LlmInference":
        """MediaPipe's options, then wgllm's: backend, kernels, stop, response_format and the SamplingParams fields
        top_p, min_p, repetition_penalty, frequency_penalty, presence_penalty, penalty_last_n,
        logit_bias, logprobs, top_logprobs (all checked, by name, before the model loads; logit_bias's
        ids against its vocabulary once it has)."""
        generation.check_sampling_options(max_tokens, top_k, temperature, random_seed)
        unknown = sorted(set(sampling) - set(SamplingParams.names()) | set(sampling) & {"top_k", "temperature", "seed"})
        if unknown:
            raise TypeError(f"unknown LlmInference option(s) {', '.join(unknown)} (random_seed is the seed)")
        params = SamplingParams(top_k=top_k, temperature=temperature, seed=random_seed, **sampling).checked(None, "random_seed")
        stop = check_stop(stop)
        grammar_for_response_format(response_format)  # a bad schema fails here, before the model loads
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
        if kernels is not None:
            from wgllm.gpu.runtime import resolve_kernels  # noqa: PLC0415

            resolve_kernels(kernels, cpu_adapter=False)  # an unknown value fails here, before the model loads
            if backend != "gpu":
                raise ValueError(f"kernels = {kernels!r} chooses the WebGPU kernel family: it needs backend='gpu', got {backend!r}")
        if not isinstance(num_responses, int) or num_responses < 1:
            raise ValueError(f"num_responses must be an integer >= 1, got {num_responses!r}")
        if num_responses > 1 and top_k <= 1:
            raise ValueError("num_responses > 1 needs top_k > 1: greedy decoding would give identical responses")
        if lora_ranks and any(not isinstance(r, int) or r < 1 for r in lora_ranks):
            raise ValueError(f"lora_ranks must be positive integers, got {lora_ranks!r}")
        model = load_model(model_path)
        params = params.checked(model.config.n_vocab, "random_seed")
        return cls(
            model,
            max_tokens=max_tokens,
            top_k=top_k,
            temperature=temperature,
            random_seed=random_seed,
            lora_ranks=lora_ranks,
            num_responses=num_responses,
            force_f32=force_f32,
            backend=backend,
            kernels=kernels,
            sampling=params,
            stop=stop,
            response_format=response_format,
        )

    @classmethod
    def create_from_model_path(cls, model_path: str, **options) -> "LlmInference":
        return cls.create_from_options(model_path, **options)

    # -- LoRA ----------------------------------------------------------------------------------
    def load_lora_model(self, path: str) -> LoraModel:
        """Load a GGUF LoRA adapter for this model; its rank must be one of lora_ranks."""
        from wgllm.lora import check_lora, check_rank, load_lora  # noqa: PLC0415

        if self._closed:
            raise RuntimeError("this LlmInference is closed")
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(LORA_BUSY_MESSAGE)
        try:
            adapter = load_lora(path)
            check_lora(adapter, self.model)
            check_rank(adapter, self.lora_ranks, "LlmInference")
            gpu = self._engine.load_lora(adapter) if self._engine is not None else None
            return LoraModel(self, adapter, gpu)
        finally:
            self._busy.release()

    def _check_lora(self, lora) -> LoraModel | None:
        if lora is None:
            return None
        if not isinstance(lora, LoraModel):
            raise ValueError(f"lora must be a LoraModel returned by load_lora_model, got {type(lora).__name__}")
        if lora.owner is not self:
            raise ValueError(LORA_OWNER_MESSAGE)
        return lora

    # -- generation ----------------------------------------------------------------------------
    def _session(self, seed: int, lora: LoraModel | None = None, params: SamplingParams | None = None):
        params = params or SamplingParams(**{**{f: getattr(self.sampling, f) for f in SamplingParams.names()}, "top_k": self.top_k, "temperature": self.temperature})
        opts = {f: getattr(params, f) for f in SamplingParams.names()}
        opts["seed"] = seed
        if self._engine is not None:
            return self._engine.session(**opts, lora=lora._gpu if lora is not None else None)
        return generation.ReferenceSession(self.model, **opts, lora=lora.adapter if lora is not None else None)

    def _run(self, fn: Callable[[], object]):
        if self._closed:
            raise RuntimeError("this LlmInference is closed")
        if not self._busy.acquire(blocking=False):
            raise RuntimeError(BUSY_MESSAGE)
        self._cancel.clear()
        try:
            return fn()
        finally:
            self._busy.release()

    def generate_response(self, prompt: str, lora=None, listener: Listener | None = None) -> str:
        """The answer to `prompt`, with the LoraModel `lora` applied if given; `listener(partial_result,
        done)` receives it piece by piece (as in MediaPipe, the listener may also come second)."""
        if callable(lora) and listener is None:
            lora, listener = None, lora
        lora = self._check_lora(lora)

        def go():
            ids = generation.encode_prompt(self.model, prompt, self.max_tokens)
            session = self._session(self.random_seed, lora)
            self.last_generations = [
                generation.run_generation(self.model, session, ids, self.max_tokens, listener, self._cancel.is_set, self.stop, self.grammar)
            ]
            return self.last_generations[0].text

        return self._run(go)

    def generate_responses(self, prompt: str, lora=None) -> list[str]:
        """num_responses answers, each drawn with its own random stream (seed + i), with `lora` if given."""
        lora = self._check_lora(lora)

        def go():
            ids = generation.encode_prompt(self.model, prompt, self.max_tokens)
            self.last_generations = [
                generation.run_generation(
                    self.model, self._session(self.random_seed + i, lora), ids, self.max_tokens, None, self._cancel.is_set, self.stop, self.grammar
                )
                for i in range(self.num_responses)
            ]
            return [g.text for g in self.last_generations]

        return self._run(go)

    def generate(
        self,
        prompt: str | list[int],
        *,
        lora=None,
        n: int = 1,
        max_new_tokens: int | None = None,
        stop=_UNSET,
        response_format=_UNSET,
        random_seed: int | None = None,
        stream: Callable[[int, str], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
        **sampling,
    ) -> list[Generation]:
        """n answers to `prompt` (text, tokenized as generate_response does, or token ids), the i-th
        drawn with random_seed + i, one after another. Options given here apply to this call only:
        the SamplingParams fields (top_k, temperature, top_p, ...), random_seed, stop,
        response_format; the rest are the instance's. max_new_tokens bounds each answer (None: up
        to max_tokens, which counts prompt and answer). `stream(i, text)` receives answer i's text
        piece by piece; `cancelled()` returning True ends the current answer ("cancelled"). Greedy
        decoding (top_k 1 or temperature 0) with n > 1 gives n equal answers, as OpenAI's API does at
        temperature 0 (MediaPipe's num_responses, an option of the instance, still needs top_k > 1).
        Everything is checked before any generation, each error naming its option: the prompt plus
        n * max_new_tokens must fit max_tokens (the n answers' budget is the one context, as
        llama.cpp's server splits its context between parallel slots)."""
        lora = self._check_lora(lora)
        call = self.check(prompt, n=n, max_new_tokens=max_new_tokens, stop=stop, response_format=response_format, random_seed=random_seed, **sampling)
        ids, params, stops, grammar = call.ids, call.params, call.stops, call.grammar

        def go():
            out = []
            for i in range(n):
                if cancelled is not None and cancelled():
                    break

                def listener(text: str, done: bool, i=i) -> None:
                    if text and stream is not None:
                        stream(i, text)

                def stop_now() -> bool:
                    return self._cancel.is_set() or (cancelled is not None and cancelled())

                session = self._session(params.seed + i, lora, params)
                out.append(generation.run_generation(self.model, session, ids, self.max_tokens, listener, stop_now, stops, grammar, max_new_tokens))
            self.last_generations = out
            return out

        return self._run(go)

    def check(
        self,
        prompt: str | list[int],
        *,
        n: int = 1,
        max_new_tokens: int | None = None,
        stop=_UNSET,
        response_format=_UNSET,
        random_seed: int | None = None,
        **sampling,
    ) -> CheckedCall:
        """generate's checks of everything but lora, each error naming its option, without running
        anything or waiting for the engine (serve-models checks a request with it before queueing it):
        the prompt tokenized (PromptTooLongError when it, or it plus n * max_new_tokens, is past
        max_tokens), the sampling options merged over the instance's."""
        unknown = sorted(set(sampling) - set(SamplingParams.names()) | set(sampling) & {"seed"})
        if unknown:
            raise TypeError(f"unknown generate option(s) {', '.join(unknown)} (random_seed is the seed)")
        base = {f: getattr(self.sampling, f) for f in SamplingParams.names()}
        base.update(top_k=self.top_k, temperature=self.temperature, seed=self.random_seed if random_seed is None else random_seed)
        params = SamplingParams(**{**base, **sampling}).checked(self.model.config.n_vocab, "random_seed")
        stops = self.stop if stop is _UNSET else check_stop(stop)
        grammar = self.grammar if response_format is _UNSET else grammar_for_response_format(response_format)
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= MAX_N:
            raise ValueError(f"n must be an integer in [1, {MAX_N}], got {n!r}")
        if max_new_tokens is not None and (not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool) or max_new_tokens < 1):
            raise ValueError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        if isinstance(prompt, str):
            ids = generation.encode_prompt(self.model, prompt, self.max_tokens)
        else:
            ids = list(prompt)
            if not ids or not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < self.model.config.n_vocab for t in ids):
                raise ValueError(f"prompt token ids must be a non-empty list of integers in [0, {self.model.config.n_vocab})")
            if len(ids) >= self.max_tokens:
                raise PromptTooLongError(f"Input is too long: the prompt has {len(ids)} tokens and max_tokens is {self.max_tokens}")
        if max_new_tokens is not None and len(ids) + n * max_new_tokens > self.max_tokens:
            raise PromptTooLongError(
                f"the prompt ({len(ids)} tokens) plus n ({n}) x max_tokens ({max_new_tokens}) = {len(ids) + n * max_new_tokens} "
                f"tokens is past the context of {self.max_tokens} tokens"
            )
        return CheckedCall(ids, params, stops, grammar, n, max_new_tokens)

    def size_in_tokens(self, text: str) -> int:
        """Tokens `text` takes as a prompt, not counting the start token the model adds (MediaPipe's
        sizeInTokens: 16 for a 16-token prompt whose run is BOS + 16); max_tokens still holds it."""
        tok = self.model.tokenizer
        ids = tok.encode(text, add_special=True, parse_special=True)
        return len(ids) - 1 if tok.add_bos and ids and ids[0] == tok.bos_id else len(ids)

    def cancel_processing(self) -> None:
        self._cancel.set()

    # -- lifetime ------------------------------------------------------------------------------
    _closed = False

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        self._closed = True

    def __enter__(self) -> "LlmInference":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
