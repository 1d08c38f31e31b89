"""The JSON-schema grammar (wgllm.grammar) and its vocabulary mask (wgllm.grammar_mask).

The oracle is the `jsonschema` package: whatever the grammar lets through must parse and validate.
- every string the shared vectors record as accepted validates; the vectors are current, and the
  TypeScript port (web/src/grammar.ts, bundled by esbuild, in Node) gives the same answers and the
  same masks over SmolLM2's real vocabulary;
- random walks over real vocabularies (SmolLM2's byte-level BPE, Gemma-3's SentencePiece) that
  pick allowed tokens at random until end of generation give valid documents for every schema;
- the mask never leaves out a token of a valid document as the real tokenizers write it;
- refused schemas name the field; the reference sampler on tiny random models gives valid JSON
  with the mask and invalid output without it.
"""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import grammar_vectors
from assets import gemma3_path, smollm2_path
from tiny_models import convert_tiny
from wgllm import reference
from wgllm.grammar import JsonGrammar, SchemaError, canonical_json, grammar_for_response_format
from wgllm.grammar_mask import GrammarVocabulary, apply_mask, token_mask
from wgllm.gguf_io import GGUFFile
from wgllm.model import load_model
from wgllm.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[2]
CORPUS = json.loads(grammar_vectors.SCHEMAS.read_text())
SCHEMAS = {e["name"]: e for e in CORPUS["schemas"]}
ESBUILD = ROOT / "web" / "node_modules" / ".bin" / "esbuild"


def validates(text: bytes, schema) -> None:
    jsonschema.validate(json.loads(text.decode("utf-8")), schema)


@pytest.fixture(scope="module")
def smollm2():
    tok = Tokenizer.from_gguf(GGUFFile(smollm2_path()))
    return tok, GrammarVocabulary.from_tokenizer(tok), holding(tok, b'"'), holding(tok, b"]}")


@pytest.fixture(scope="module")
def gemma3():
    tok = Tokenizer.from_gguf(GGUFFile(gemma3_path()))
    return tok, GrammarVocabulary.from_tokenizer(tok), holding(tok, b'"'), holding(tok, b"]}")


def test_corpus_has_50_schemas_that_are_valid_json_schema():
    assert len(CORPUS["schemas"]) >= 50
    for entry in CORPUS["schemas"]:
        jsonschema.Draft202012Validator.check_schema(entry["schema"])
        for doc in entry["documents"]:
            jsonschema.validate(doc, entry["schema"])


def test_vectors_are_current():
    assert json.loads(grammar_vectors.text(grammar_vectors.build())) == json.loads(grammar_vectors.VECTORS.read_text()), (
        "tests/data/grammar_vectors.json is stale: run python tests/py/grammar_vectors.py")


def test_every_accepted_vector_validates_and_documents_are_accepted():
    vectors = json.loads(grammar_vectors.VECTORS.read_text())
    accepted = 0
    for case in vectors["cases"]:
        for s in case["strings"]:
            if s["reject"] < 0 and s["accepting"]:
                validates(bytes.fromhex(s["hex"]), case["schema"])
                accepted += 1
    assert accepted > 300
    for entry in CORPUS["schemas"]:
        g = JsonGrammar.from_schema(entry["schema"])
        for doc in entry["documents"]:
            texts = [canonical_json(doc, "#").decode()]
            if not entry.get("canonical_only"):
                texts += [json.dumps(doc, ensure_ascii=False), json.dumps(doc, ensure_ascii=False, indent=2)]
            for text in texts:
                state = g.start().advance(text.encode())
                assert state is not None and state.is_accepting(), (entry["name"], text)


@pytest.mark.parametrize("text, schema, accepted", [
    ('{"a":1}', {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}, True),
    ('{"a":1.0}', {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}, False),
    ('{"a":1,"a":1}', {"type": "object", "properties": {"a": {"type": "integer"}}}, False),
    ('{"b":1}', {"type": "object", "properties": {"a": {"type": "integer"}}}, False),
    ('{}', {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}, False),
    ('[1,2,3]', {"type": "array", "maxItems": 2}, False),
    ('[1,]', {"type": "array"}, False),
    ('"\\u00e9"', {"type": "string"}, False),  # not the canonical spelling: é is written as is
    ('"\\u001f\\n"', {"type": "string"}, True),
    ('"\\u000a"', {"type": "string"}, False),  # \n has a short escape
    ('"\xc3\xa9"', {"type": "string", "maxLength": 1}, True),
    ('"ab"', {"type": "string", "maxLength": 1}, False),
    ('"\xed\xa0\x80"', {"type": "string"}, False),  # a UTF-8-encoded surrogate
    ('01', {"type": "integer"}, False),
    ('-', {"type": "number"}, False),
    ('1e5', {"type": "number"}, True),
    ('1e100', {"type": "number"}, False),  # three exponent digits
    ('12345678901234567890', {"type": "integer"}, False),  # 20 digits
    ('1', {"enum": [1, 12]}, True),
    ('1.0', {"enum": [1.0]}, False),  # JavaScript's spelling: 1
    (' ' * 20 + '1', {"type": "integer"}, True),
    (' ' * 21 + '1', {"type": "integer"}, False),
    ('1 ', {"type": "integer"}, False),  # nothing after the document
])
def test_hand_picked_strings(text, schema, accepted):
    state = JsonGrammar.from_schema(schema).start().advance(text.encode("latin-1"))
    assert (state is not None and state.is_accepting()) == accepted
    if accepted:
        validates(text.encode("latin-1"), schema)


@pytest.mark.parametrize("entry", CORPUS["errors"], ids=lambda e: e["path"])
def test_refused_schema_names_the_field(entry):
    with pytest.raises(SchemaError) as e:
        JsonGrammar.from_schema(entry["schema"])
    assert e.value.path == entry["path"] and str(e.value).startswith(f"JSON schema {entry['path']}: ")


def test_strict_false_ignores_unsupported_keywords_and_response_format():
    schema = {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}, "required": ["age"]}
    with pytest.raises(SchemaError, match="'minimum' is not supported"):
        grammar_for_response_format({"type": "json_schema", "json_schema": {"name": "p", "schema": schema, "strict": True}})
    g = grammar_for_response_format({"type": "json_schema", "json_schema": {"name": "p", "schema": schema}})
    assert g.start().advance(b'{"age":-1}').is_accepting()  # the minimum is not enforced
    assert grammar_for_response_format({"type": "text"}) is None
    assert grammar_for_response_format({"type": "json_object"}).start().advance(b'{"x":[1]}').is_accepting()
    with pytest.raises(SchemaError, match="response_format"):
        grammar_for_response_format({"type": "xml"})
    with pytest.raises(SchemaError, match="response_format.json_schema.strict"):
        grammar_for_response_format({"type": "json_schema", "json_schema": {"schema": {}, "strict": "yes"}})


def holding(tok, chars: bytes) -> np.ndarray:
    """bool (vocab): the tokens whose bytes hold one of `chars`."""
    return np.array([any(b in chars for b in tok.token_bytes(i)) for i in range(tok.vocab_size)])


def random_walk(grammar, model, rng, limit=1500):
    """Allowed tokens at random until end of generation: 40% of the time any allowed token, else one
    that holds a '"' (40%) or a ']' or '}' (20%) when there are some (else strings and containers would
    run for thousands of tokens); end of generation counts as both."""
    tok, vocab, quotes, brackets = model
    state, out, eos = grammar.start(), b"", set(vocab.eos_ids.tolist())
    for _ in range(limit):
        allowed = token_mask(state, vocab)
        ids = np.flatnonzero(allowed)
        assert ids.size, out
        u, pick = rng.random(), ids
        if u >= 0.4:
            closing = allowed & (quotes if u < 0.8 else brackets)
            closing[vocab.eos_ids] = allowed[vocab.eos_ids]
            if closing.any():
                pick = np.flatnonzero(closing)
        tid = int(pick[rng.randrange(len(pick))])
        if tid in eos:
            assert state.is_accepting()
            return out
        out += tok.token_bytes(tid)
        state = state.advance(tok.token_bytes(tid))
        assert state is not None, out
    raise AssertionError(f"no end of generation after {limit} tokens: {out[:200]!r}")


WALKED = [e for e in CORPUS["schemas"] if e.get("walks", True)]


@pytest.mark.parametrize("entry", WALKED, ids=lambda e: e["name"])
def test_random_walks_on_smollm2_validate(entry, smollm2):
    grammar = JsonGrammar.from_schema(entry["schema"], max_depth=6)
    rng = random.Random(entry["name"])
    for _ in range(2):
        validates(random_walk(grammar, smollm2, rng), entry["schema"])


def test_random_walks_on_gemma3_validate(gemma3):
    rng = random.Random(3)
    for entry in WALKED[::4]:
        validates(random_walk(JsonGrammar.from_schema(entry["schema"], max_depth=6), gemma3, rng), entry["schema"])


def document_texts(entry):
    for doc in entry["documents"]:
        yield canonical_json(doc, "#").decode()
        if not entry.get("canonical_only"):
            yield json.dumps(doc, ensure_ascii=False)
            yield json.dumps(doc, ensure_ascii=False, indent=2)


@pytest.mark.parametrize("model", ["smollm2", "gemma3"])
def test_mask_allows_every_token_of_valid_documents(model, request):
    tok, vocab, *_ = request.getfixturevalue(model)
    checked = 0
    for entry in CORPUS["schemas"]:
        grammar = JsonGrammar.from_schema(entry["schema"])
        for text in document_texts(entry):
            state = grammar.start()
            for tid in tok.encode(text):
                assert token_mask(state, vocab)[tid], (entry["name"], text, tok.token_bytes(tid))
                state = state.advance(tok.token_bytes(tid))
                checked += 1
            assert token_mask(state, vocab)[vocab.eos_ids].all()
    assert checked > 2000


def test_typescript_port_gives_the_same_answers(tmp_path, smollm2):
    """The vectors, and masks over SmolLM2's vocabulary along documents (the fast path inside strings included)."""
    bundles = {}
    for name in ("grammar", "gguf", "tokenizer"):
        bundles[name] = tmp_path / f"{name}.mjs"
        subprocess.run([str(ESBUILD), str(ROOT / "web" / "src" / f"{name}.ts"), "--bundle", "--platform=node", "--format=esm",
                        "--log-level=warning", f"--outfile={bundles[name]}"], check=True)
    tok, vocab, *_ = smollm2
    runs = []
    for name in ("person", "unicode_strings", "string_lengths", "enum_unicode", "json_object", "anyof_objects", "key_escapes_free"):
        entry = SCHEMAS[name]
        grammar = JsonGrammar.from_schema(entry["schema"])
        ids = tok.encode(json.dumps(entry["documents"][0], ensure_ascii=False))
        state, masks = grammar.start(), []
        for tid in ids:
            masks.append(grammar_vectors.mask_hex(token_mask(state, vocab)))
            state = state.advance(tok.token_bytes(tid))
        masks.append(grammar_vectors.mask_hex(token_mask(state, vocab)))
        runs.append({"schema": entry["schema"], "ids": ids, "masks": masks})
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"file": str(smollm2_path()), "gguf": str(bundles["gguf"]), "tokenizer": str(bundles["tokenizer"]), "runs": runs}))
    done = subprocess.run(["node", str(ROOT / "tests" / "py" / "grammar_vectors.mjs"), str(bundles["grammar"]), str(grammar_vectors.VECTORS), str(job)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["checked"] == sum(len(c["strings"]) for c in json.loads(grammar_vectors.VECTORS.read_text())["cases"]) + len(CORPUS["errors"]) + sum(len(r["masks"]) for r in runs)


def test_apply_mask():
    logits = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    out = apply_mask(logits, np.array([True, False, True]))
    assert out.dtype == np.float32 and out.tolist() == [[1.0, -np.inf, 3.0]] and logits[0, 1] == 2.0
    with pytest.raises(ValueError, match="not the same vocabulary"):
        apply_mask(logits, np.array([True, False]))


DEMO_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 6},
        "count": {"type": "integer"},
        "ok": {"type": "boolean"},
        "color": {"enum": ["red", "green", "blue"]},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "maxItems": 2},
    },
    "required": ["name", "count", "color"],
    "additionalProperties": False,
}


def sample(model, prompt: str, grammar, seed: int, max_new: int = 600) -> bytes:
    """The reference sampler (top-k 40, temperature 1), with the grammar's mask when given."""
    tok = model.tokenizer
    vocab = GrammarVocabulary.from_tokenizer(tok) if grammar else None
    cache, out = reference.KVCache(), b""
    state = grammar.start() if grammar else None
    logits = reference.forward(model, tok.encode(prompt, add_special=True), np.float32, cache)[-1]
    for step in range(max_new):
        if grammar:
            logits = apply_mask(logits, token_mask(state, vocab))
        tid = reference.sample_top_k(logits, 40, 1.0, reference.random_uniform(seed, step))
        if tid in tok.eog_ids:
            break
        out += tok.token_bytes(tid)
        if grammar:
            state = state.advance(tok.token_bytes(tid))
        logits = reference.forward(model, [tid], np.float32, cache)[-1]
    return out


@pytest.mark.parametrize("arch", ["llama", "gpt2"])  # SentencePiece with byte fallback, byte-level BPE
def test_reference_sampler_with_the_mask_gives_valid_json(arch, tmp_path):
    room = {"n_positions": 1024} if arch == "gpt2" else {}  # its 64 learned positions are too few for a document
    model = load_model(convert_tiny(arch, 32, tmp_path / f"{arch}.gguf", **room))
    grammar = JsonGrammar.from_schema(DEMO_SCHEMA)
    failures_without = 0
    for seed, prompt in enumerate(["Reply in JSON:", "The quick brown fox", "{", "Numbers 0 1 2 3"]):
        validates(sample(model, prompt, grammar, seed), DEMO_SCHEMA)
        try:
            validates(sample(model, prompt, None, seed, 60), DEMO_SCHEMA)
        except (ValueError, jsonschema.ValidationError):
            failures_without += 1
    assert failures_without > 0  # the mask does the work
