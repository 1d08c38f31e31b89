"""LlmInference semantics (MediaPipe's) on the reference backend with the real SmolLM2 model."""

from __future__ import annotations

import threading

import pytest

from wgllm.generation import PromptTooLongError
from wgllm.inference import BUSY_MESSAGE, LlmInference


@pytest.fixture(scope="module")
def make(smollm2_path):
    def build(**options):
        options.setdefault("backend", "reference")
        return LlmInference.create_from_options(str(smollm2_path), **options)

    return build


def test_same_seed_same_text_and_other_seed_other_text(make):
    a = make(max_tokens=40, top_k=40, temperature=1.0, random_seed=7).generate_response("Once upon a time")
    b = make(max_tokens=40, top_k=40, temperature=1.0, random_seed=7).generate_response("Once upon a time")
    c = make(max_tokens=40, top_k=40, temperature=1.0, random_seed=8).generate_response("Once upon a time")
    assert a == b
    assert a != c


def test_max_tokens_counts_prompt_and_answer(make):
    llm = make(max_tokens=12, top_k=1)
    n_prompt = llm.size_in_tokens("Write a very long story about dragons")
    answer = llm.generate_response("Write a very long story about dragons")
    n_answer = len(llm.model.tokenizer.encode(answer))
    assert 0 < n_answer <= 12 - n_prompt + 1  # re-tokenising text may merge pieces, never add
    with pytest.raises(PromptTooLongError, match="max_tokens is 12"):
        llm.generate_response("word " * 20)


def test_busy_while_generating_and_cancel(make):
    llm = make(max_tokens=64, top_k=1)
    started, release = threading.Event(), threading.Event()
    pieces: list[str] = []

    def listener(piece: str, done: bool) -> None:
        pieces.append(piece)
        started.set()
        release.wait(30)

    result: dict[str, str] = {}
    worker = threading.Thread(target=lambda: result.setdefault("text", llm.generate_response("Tell me about the sea", listener=listener)))
    worker.start()
    assert started.wait(60)
    with pytest.raises(RuntimeError, match=BUSY_MESSAGE):
        llm.generate_response("Another prompt")
    llm.cancel_processing()
    release.set()
    worker.join(60)
    assert not worker.is_alive()
    # cancelled right after the first piece: at most one more token was decoded
    assert len(pieces) <= 3
    assert result["text"] == "".join(pieces)


def test_generate_responses_gives_num_responses_and_first_matches_seed(make):
    llm = make(max_tokens=24, top_k=40, temperature=1.0, random_seed=3, num_responses=3)
    answers = llm.generate_responses("My favourite fruit is")
    assert len(answers) == 3
    single = make(max_tokens=24, top_k=40, temperature=1.0, random_seed=3).generate_response("My favourite fruit is")
    assert answers[0] == single
    assert len(set(answers)) > 1


def test_bad_options_are_named(smollm2_path):
    with pytest.raises(ValueError, match="top_k"):
        LlmInference.create_from_options(str(smollm2_path), top_k=0, backend="reference")
    with pytest.raises(ValueError, match="temperature"):
        LlmInference.create_from_options(str(smollm2_path), temperature=-1, backend="reference")
    with pytest.raises(ValueError, match="backend"):
        LlmInference.create_from_options(str(smollm2_path), backend="tpu")


def test_context_manager_closes(make):
    with make(max_tokens=16, top_k=1) as llm:
        assert llm.generate_response("Hi")
    with pytest.raises(RuntimeError, match="closed"):
        llm.generate_response("Hi")


def test_force_f32_reaches_the_gpu_engine(smollm2_path):
    """On the GPU backend the KV cache is f16 by default where the adapter has shader-f16 (lavapipe
    has it), and f32 with force_f32."""
    from wgllm.gpu.runtime import get_context  # noqa: PLC0415

    assert get_context().has_f16, "this adapter lacks shader-f16 (lavapipe has it)"
    with LlmInference.create_from_options(str(smollm2_path), max_tokens=8, top_k=1) as llm:
        assert not llm.force_f32 and llm._engine.kv_f16
    with LlmInference.create_from_options(str(smollm2_path), max_tokens=8, top_k=1, force_f32=True) as llm:
        assert llm.force_f32 and not llm._engine.kv_f16
