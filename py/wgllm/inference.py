"""LlmInference: the public Python API, with the semantics of MediaPipe's LLM Inference task.

    with LlmInference.create_from_model_path("model.gguf") as llm:
        print(llm.generate_response("The capital of France is"))

backend "gpu" runs on WebGPU through wgpu-py; "reference" on the numpy reference transformer.

LoRA, as in MediaPipe: declare the ranks at creation (lora_ranks=[4]), load adapters
(GGUF LoRA files, `wgllm convert --lora-ckpt ...`) with load_lora_model, pass the handle per call:

    llm = LlmInference.create_from_options("model.gguf", lora_ranks=[4])
    lora = llm.load_lora_model("adapter.gguf")
    llm.generate_response("Hello", lora)   # with the adapter; without it on the next call
"""

from __future__ import annotations

import threading
from typing import Callable

from wgllm import generation
from wgllm.generation import Listener
from wgllm.model import Model, load_model

BUSY_MESSAGE = "Previous invocation or loading is still ongoing."
LORA_BUSY_MESSAGE = "Cannot load LoRA model while loading or processing."
LORA_OWNER_MESSAGE = "The LoRA model was not loaded by this LLM Inference task."
_BACKENDS = ("gpu", "reference")


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
    ):
        self.model = model
        self.max_tokens, self.top_k, self.temperature, self.random_seed = max_tokens, top_k, temperature, random_seed
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
    ) -> "LlmInference":
        generation.check_sampling_options(max_tokens, top_k, temperature, random_seed)
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
        return cls(
            load_model(model_path),
            max_tokens=max_tokens,
            top_k=top_k,
            temperature=temperature,
            random_seed=random_seed,
            lora_ranks=lora_ranks,
            num_responses=num_responses,
            force_f32=force_f32,
            backend=backend,
            kernels=kernels,
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
    def _session(self, seed: int, lora: LoraModel | None = None):
        opts = dict(top_k=self.top_k, temperature=self.temperature, seed=seed)
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
            return generation.run_session(self.model, session, ids, self.max_tokens, listener, self._cancel.is_set)

        return self._run(go)

    def generate_responses(self, prompt: str, lora=None) -> list[str]:
        """num_responses answers, each drawn with its own random stream (seed + i), with `lora` if given."""
        lora = self._check_lora(lora)

        def go():
            ids = generation.encode_prompt(self.model, prompt, self.max_tokens)
            return [
                generation.run_session(
                    self.model, self._session(self.random_seed + i, lora), ids, self.max_tokens, None, self._cancel.is_set
                )
                for i in range(self.num_responses)
            ]

        return self._run(go)

    def size_in_tokens(self, text: str) -> int:
        return len(self.model.tokenizer.encode(text, add_special=True, parse_special=True))

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
