"""Structured output end to end: LlmInference with OpenAI's response_format, the grammar's mask
applied in the GPU sampler (shaders/sample.wgsl) and in the reference's.

- every schema of the corpus (tests/data/grammar_schemas.json, 57) gives output that parses and
  validates (`jsonschema`) on a tiny random model in the Python GPU engine, or, where the random
  model never writes what the schema requires (a required key among free additional ones) and runs
  into max_tokens, a valid prefix of a document (finish_reason "length", as OpenAI's API truncates);
  on a sample of them the reference backend draws the same tokens;
- without the mask the same prompts, options and lengths fail on some: the mask does the work;
- SmolLM2, a real model asked for JSON in its chat format, gives valid documents with the mask;
- bad structured-output requests are refused by name before anything is generated.
"""

from __future__ import annotations

import json

import jsonschema
import pytest

from assets import smollm2_path
from tiny_models import convert_tiny
from wgllm.generation import PromptTooLongError
from wgllm.grammar import SchemaError, grammar_for_response_format
from wgllm.inference import LlmInference

CORPUS = json.loads((__import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "grammar_schemas.json").read_text())["schemas"]
PROMPT = "Reply in JSON:"


def response_format(schema) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "test", "schema": schema, "strict": True}}


def valid(text: str, schema) -> bool:
    try:
        jsonschema.validate(json.loads(text), schema)
    except (ValueError, jsonschema.ValidationError):
        return False
    return True


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return convert_tiny("phi2", 32, tmp_path_factory.mktemp("structured") / "phi2.gguf")  # flat logits: varied output


@pytest.fixture(scope="module")
def tiny_gpu(tiny_path):
    with LlmInference.create_from_options(str(tiny_path), backend="gpu", max_tokens=1024, top_k=40, temperature=1.0) as llm:
        yield llm


@pytest.fixture(scope="module")
def closers(tiny_gpu):
    """logit_bias +5 on the tokens that close a string, array or object: a random model closes a
    free string with probability ~1/vocabulary a token, and would mostly run into max_tokens."""
    tok = tiny_gpu.model.tokenizer
    ids = {i: 5.0 for i in range(tok.vocab_size) if (b := tok.token_bytes(i)) and set(b) <= set(b'"]}, ') and set(b) & set(b'"]}')}
    assert ids
    return ids


TRUNCATED = {"additional_and_required"}  # "known" is required, the model writes other keys without end


@pytest.mark.parametrize("index", range(len(CORPUS)), ids=[e["name"] for e in CORPUS])
def test_every_corpus_schema_gives_valid_json_on_the_gpu(index, tiny_gpu, tiny_path, closers):
    entry = CORPUS[index]
    grammar = grammar_for_response_format(response_format(entry["schema"]))
    (g,) = tiny_gpu.generate(PROMPT, response_format=response_format(entry["schema"]), random_seed=index, logit_bias=closers)
    if entry["name"] in TRUNCATED:
        assert g.finish_reason == "length" and grammar.start().advance(g.text.encode()) is not None
    else:
        assert g.finish_reason == "stop", f"{entry['name']}: {len(g.tokens)} tokens, no end"
        assert valid(g.text, entry["schema"]), f"{entry['name']}: {g.text!r}"
    if index % 6 == 0:  # the reference sampler with the same mask draws the same tokens
        with LlmInference.create_from_options(str(tiny_path), backend="reference", max_tokens=1024, top_k=40, temperature=1.0) as ref:
            (r,) = ref.generate(PROMPT, response_format=response_format(entry["schema"]), random_seed=index, logit_bias=closers)
        assert r.tokens == g.tokens


def test_without_the_mask_the_same_prompts_fail_on_some(tiny_gpu, closers):
    failed = []
    for index in range(0, len(CORPUS), 4):
        schema = CORPUS[index]["schema"]
        (g,) = tiny_gpu.generate(PROMPT, response_format=response_format(schema), random_seed=index, logit_bias=closers)
        (plain,) = tiny_gpu.generate(PROMPT, random_seed=index, logit_bias=closers, max_new_tokens=len(g.tokens))
        assert valid(g.text, schema)
        failed += [CORPUS[index]["name"]] if not valid(plain.text, schema) else []
    assert failed, "every prompt gave valid JSON without the mask: the test proves nothing"


def test_response_format_as_a_creation_option_and_json_object(tiny_path, closers):
    schema = {"type": "object", "properties": {"a": {"enum": [1, 2]}, "b": {"type": "boolean"}}, "required": ["a", "b"], "additionalProperties": False}
    with LlmInference.create_from_options(str(tiny_path), backend="gpu", max_tokens=600, response_format=response_format(schema), logit_bias=closers) as llm:
        assert valid(llm.generate_response(PROMPT), schema)
        texts = llm.generate(PROMPT, n=3, temperature=1.5)
        assert all(valid(g.text, schema) for g in texts)
        obj = llm.generate(PROMPT, response_format={"type": "json_object"})[0]
        assert isinstance(json.loads(obj.text), dict)
        plain = llm.generate(PROMPT, response_format=None, max_new_tokens=20)[0]  # this call only: off
        assert not valid(plain.text, {"type": "object"})
        assert valid(llm.generate_response(PROMPT), schema)  # the instance's option again


SMOLLM2_SCHEMAS = [
    {
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 16}, "age": {"type": "integer"}, "city": {"enum": ["Paris", "Rome", "Oslo"]}},
        "required": ["name", "age", "city"],
        "additionalProperties": False,
    },
    {"type": "object", "properties": {"colors": {"type": "array", "items": {"enum": ["red", "green", "blue"]}, "minItems": 2, "maxItems": 3}}, "required": ["colors"], "additionalProperties": False},
]


def test_smollm2_answers_with_valid_json(tmp_path):
    chat = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
    asks = ["Describe a person who lives in a European city, in JSON.", "List two or three colours in JSON."]
    with LlmInference.create_from_options(str(smollm2_path()), backend="gpu", max_tokens=256, top_k=1, temperature=0.0) as llm:
        plain_failed = 0
        for schema, ask in zip(SMOLLM2_SCHEMAS, asks):
            (g,) = llm.generate(chat.format(ask), response_format=response_format(schema), max_new_tokens=60)
            assert g.finish_reason == "stop" and valid(g.text, schema), g.text
            (plain,) = llm.generate(chat.format(ask), max_new_tokens=len(g.tokens))
            plain_failed += not valid(plain.text, schema)
        assert plain_failed, "SmolLM2 wrote valid JSON for every schema without the mask: the test proves nothing"


def test_n_answers_with_greedy_decoding_are_equal(tiny_gpu):
    """n > 1 with top_k 1 or temperature 0 is allowed (as OpenAI's API allows it): n equal answers, each the n = 1 answer."""
    (one,) = tiny_gpu.generate(PROMPT, top_k=1, max_new_tokens=8)
    for greedy in (dict(top_k=1), dict(temperature=0.0)):
        answers = tiny_gpu.generate(PROMPT, n=3, max_new_tokens=8, random_seed=5, **greedy)
        assert [(g.text, g.tokens) for g in answers] == [(one.text, one.tokens)] * 3


def test_bad_structured_requests_are_refused_by_name_before_generating(tiny_gpu):
    tiny_gpu.last_generations = []
    cases = [
        (dict(response_format=response_format({"type": "string", "pattern": "^a"})), SchemaError, r"#/pattern"),
        (dict(response_format={"type": "yaml"}), SchemaError, r"response_format"),
        (dict(response_format={"type": "json_schema", "json_schema": {"name": "x"}}), SchemaError, r"response_format\.json_schema"),
        (dict(logit_bias={100000: 1.0}), ValueError, r"logit_bias: token id 100000 is outside the vocabulary"),
        (dict(stop=["x"] * 17), ValueError, r"stop has 17 strings"),
        (dict(n=4, max_new_tokens=300), PromptTooLongError, r"n \(4\) x max_tokens \(300\)"),
        (dict(n=0), ValueError, r"n must be an integer"),
        (dict(top_p=0.0), ValueError, r"top_p must be a number in \(0, 1\]"),
        (dict(seed=3), TypeError, r"unknown generate option\(s\) seed"),
    ]
    for options, error, message in cases:
        for call in (tiny_gpu.check, tiny_gpu.generate):  # generate runs check's checks
            with pytest.raises(error, match=message):
                call(PROMPT, **options)
    assert tiny_gpu.last_generations == []  # nothing ran


def test_check_gives_what_generate_draws_with_and_does_not_wait_for_the_engine(tiny_gpu):
    call = tiny_gpu.check(PROMPT, n=2, max_new_tokens=5, stop="}", top_k=3, random_seed=9)
    assert call.ids == tiny_gpu.model.tokenizer.encode(PROMPT, add_special=True, parse_special=True)
    assert (call.n, call.max_new_tokens, call.stops, call.params.top_k, call.params.seed, call.grammar) == (2, 5, ["}"], 3, 9, None)
    assert call.params.temperature == tiny_gpu.temperature  # the instance's, where the call gives none
    with tiny_gpu._busy:  # as if a generation were running: checking a request does not wait for it
        assert tiny_gpu.check(call.ids).ids == call.ids
        with pytest.raises(PromptTooLongError, match=r"n \(4\) x max_tokens \(300\)"):
            tiny_gpu.check(PROMPT, n=4, max_new_tokens=300)
