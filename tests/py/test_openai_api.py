"""serve-models' OpenAI API, spoken to with the official `openai` client (and raw HTTP where the
client cannot: bad JSON, a disconnect) against a real uvicorn on a loopback port.

The model is the tiny random Gemma-2 (f32; its answers vary with the seed), converted with a chat
template that writes {{ bos_token }} itself. The oracle is LlmInference.generate run here, in the
test process, on the same file with the same options: the API must give its text and tokens.
"""

from __future__ import annotations

import os

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

import http.client
import json
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import jsonschema
import openai
import pytest
from test_server import Server, write_web
from tiny_models import tiny_model

from wgllm.chat import render_chat, strip_special
from wgllm.inference import LlmInference

CONTEXT = 1024
# Llama 3.1's way with tools, in small: a tool's answer under an ipython header (which makes the
# server parse calls as Llama 3.1 writes them, bare JSON {"name", "parameters"}), calls as that JSON
TEMPLATE = ("{{ bos_token }}{% if tools %}<tools>{{ tools | tojson }}</tools>\n{% endif %}{% for m in messages %}"
            "{% if m['role'] == 'tool' %}<|start_header_id|>ipython<|end_header_id|>{{ m['content'] }}\n"
            "{% elif m['role'] not in ['system', 'user', 'assistant'] %}{{ raise_exception('unknown role ' + m['role']) }}"
            "{% elif m.tool_calls %}<assistant>{% for c in m.tool_calls %}{\"name\": \"{{ c.function.name }}\", \"parameters\": "
            "{{ c.function.arguments | tojson }}}{% endfor %}</assistant>\n"
            "{% else %}<{{ m['role'] }}>{{ m['content'] | trim }}</{{ m['role'] }}>\n{% endif %}{% endfor %}"
            "{% if add_generation_prompt %}<assistant>{% endif %}")
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "The quick brown fox"}]
SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}, "colour": {"enum": ["red", "green"]}},
          "required": ["ok", "colour"], "additionalProperties": False}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    from wgllm.convert import ConversionConfig, convert_checkpoint

    root = tmp_path_factory.mktemp("openai")
    folder = root / "tiny-gemma2"
    shutil.copytree(tiny_model("gemma2").folder, folder)
    (folder / "chat_template.jinja").write_text(TEMPLATE)
    out = root / "tiny-gemma2.gguf"
    convert_checkpoint(ConversionConfig(str(folder), "safetensors", output_file=str(out), attention_quant_bits=32,
                                        feedforward_quant_bits=32, embedding_quant_bits=32))
    return out


@pytest.fixture(scope="module")
def llm(model_file):
    with LlmInference.create_from_options(str(model_file), backend="gpu", max_tokens=CONTEXT, top_k=64, temperature=1.0) as llm:
        yield llm


@pytest.fixture(scope="module")
def server(model_file, tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    s = Server("--model", model_file, "--web-dir", write_web(root / "web"), "--context", CONTEXT, "--queue", 1, log=root / "server.log").wait_ready()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"http://127.0.0.1:{server.port}/v1", api_key="none", max_retries=0, timeout=60)


def chat_prompt(llm) -> str:
    tok = llm.model.tokenizer
    return strip_special(render_chat(TEMPLATE, CHAT, bos_token=tok.tokens[tok.bos_id], eos_token=tok.tokens[tok.eos_id]), tok)


def no_eos(llm) -> dict:
    return {str(i): -100 for i in llm.model.tokenizer.eog_ids}


def post(server, path: str, body: bytes | dict):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return server.request("POST", path, {"content-type": "application/json"}, data)


def sse_events(raw: bytes) -> list:
    out = []
    for block in raw.decode().split("\n\n"):
        if block.startswith("data: "):
            out.append(block[6:] if block[6:] == "[DONE]" else json.loads(block[6:]))
    return out


# -- the template and the prompt -------------------------------------------------------------------
def test_render_chat_as_transformers(smollm2_path):
    """render_chat against transformers' own renderer: SmolLM2's real template, and one using the
    features transformers gives templates (tojson with its arguments, loop controls, generation blocks)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    from wgllm.chat import ChatTemplateError
    from wgllm.gguf_io import GGUFFile

    g = GGUFFile(smollm2_path)
    smollm2 = g.get("tokenizer.chat_template")
    g.close()
    features = ("{{ bos_token }}{% for m in messages %}{% if loop.index0 > 2 %}{% break %}{% endif %}"
                "{% generation %}<{{ m.role }}>{{ m.content }}{% endgeneration %}{% endfor %}{{ tools | tojson(indent=1) }}"
                "{% if add_generation_prompt %}<a>{% endif %}{{ eos_token }}")
    turns = [*CHAT, {"role": "assistant", "content": "Jumps. ✓"}, {"role": "user", "content": "  again  "}]
    tools = [{"type": "function", "function": {"name": "lookup", "description": "é", "parameters": {"type": "object"}}}]
    for template in (smollm2, features, TEMPLATE):
        for messages in (CHAT, CHAT[1:], turns):
            for prompt in (True, False):
                want = render_jinja_template([messages], tools=tools, chat_template=template, add_generation_prompt=prompt, bos_token="<s>", eos_token="</s>")[0][0]
                assert render_chat(template, messages, tools=tools, add_generation_prompt=prompt, bos_token="<s>", eos_token="</s>") == want
    assert render_chat("{{ strftime_now('%Y') }}", CHAT) == time.strftime("%Y")
    with pytest.raises(ChatTemplateError, match="unknown role robot"):
        render_chat(TEMPLATE, [{"role": "robot", "content": "x"}])
    with pytest.raises(ChatTemplateError, match="does not parse"):
        render_chat("{% for %}", CHAT)


def test_models_and_the_prompt_has_one_bos(server, client, llm, model_file):
    assert [(m.id, m.object) for m in client.models.list().data] == [(model_file.name, "model")]
    assert client.models.retrieve(model_file.name).id == model_file.name
    r = client.chat.completions.create(model=model_file.name, messages=CHAT, max_tokens=2, seed=1)
    tok = llm.model.tokenizer
    ids = tok.encode(chat_prompt(llm), add_special=True, parse_special=True)
    assert ids[0] == tok.bos_id and ids[1] != tok.bos_id  # the template's {{ bos_token }} was stripped: one BOS
    assert r.usage.prompt_tokens == len(ids) and r.usage.total_tokens == len(ids) + r.usage.completion_tokens


# -- answers against LlmInference.generate ------------------------------------------------------------
def test_chat_and_completions_match_generate(client, llm, model_file):
    name = model_file.name
    options = dict(max_tokens=24, seed=5, temperature=0.9, top_p=0.9, frequency_penalty=0.5, presence_penalty=0.3)
    want = llm.generate(chat_prompt(llm), n=1, max_new_tokens=24, random_seed=5, temperature=0.9, top_p=0.9,
                        frequency_penalty=0.5, presence_penalty=0.3, top_k=64)[0]
    r = client.chat.completions.create(model=name, messages=CHAT, **options)
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.model == name
    assert r.choices[0].message.role == "assistant" and r.choices[0].message.content == want.text
    assert r.choices[0].finish_reason == ("length" if want.finish_reason == "length" else "stop")
    assert r.usage.completion_tokens == len(want.tokens)

    chunks = list(client.chat.completions.create(model=name, messages=CHAT, stream=True, stream_options={"include_usage": True}, **options))
    assert chunks[0].choices[0].delta.role == "assistant" and all(c.id == chunks[0].id and c.object == "chat.completion.chunk" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == want.text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == r.choices[0].finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == len(want.tokens)
    assert all(c.usage is None for c in chunks[:-1])

    # completions: the prompt as written, with min_p, top_k (extensions) and a repetition penalty
    extra = {"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.2}
    want = llm.generate("The quick brown fox", n=1, max_new_tokens=20, random_seed=9, **extra)[0]
    r = client.completions.create(model=name, prompt="The quick brown fox", max_tokens=20, seed=9, extra_body=extra)
    assert r.id.startswith("cmpl-") and r.object == "text_completion" and r.choices[0].text == want.text
    assert r.usage.prompt_tokens == want.prompt_tokens and r.usage.completion_tokens == len(want.tokens)
    chunks = list(client.completions.create(model=name, prompt="The quick brown fox", max_tokens=20, seed=9, stream=True, extra_body=extra))
    assert "".join(c.choices[0].text for c in chunks) == want.text and chunks[-1].choices[0].finish_reason == r.choices[0].finish_reason
    ids = llm.model.tokenizer.encode("The quick brown fox", add_special=True)
    assert client.completions.create(model=name, prompt=ids, max_tokens=20, seed=9, extra_body=extra).choices[0].text == want.text


def test_seed_n_stop_and_logit_bias(client, llm, model_file):
    name, prompt = model_file.name, "She sells"
    a = client.completions.create(model=name, prompt=prompt, max_tokens=16, seed=3)
    assert client.completions.create(model=name, prompt=prompt, max_tokens=16, seed=3).choices[0].text == a.choices[0].text
    assert client.completions.create(model=name, prompt=prompt, max_tokens=16, seed=4).choices[0].text != a.choices[0].text

    want = llm.generate(prompt, n=3, max_new_tokens=10, random_seed=11, top_k=64)
    r = client.completions.create(model=name, prompt=prompt, max_tokens=10, seed=11, n=3)
    assert [c.index for c in r.choices] == [0, 1, 2] and [c.text for c in r.choices] == [g.text for g in want]
    assert r.usage.completion_tokens == sum(len(g.tokens) for g in want)
    chunks = list(client.chat.completions.create(model=name, messages=CHAT, max_tokens=10, seed=11, n=2, stream=True))
    texts = ["".join(c.choices[0].delta.content or "" for c in chunks if c.choices[0].index == i) for i in range(2)]
    assert texts == [g.text for g in llm.generate(chat_prompt(llm), n=2, max_new_tokens=10, random_seed=11, top_k=64)]

    # greedy decoding with n > 1: n equal answers, as OpenAI's API gives at temperature 0
    greedy = llm.generate(prompt, max_new_tokens=6, top_k=1)[0].text
    r = client.completions.create(model=name, prompt=prompt, max_tokens=6, n=2, temperature=0)
    assert [c.text for c in r.choices] == [greedy, greedy]

    full = llm.generate(prompt, max_new_tokens=30, random_seed=2, top_k=64, logit_bias={int(k): v for k, v in no_eos(llm).items()})[0].text
    stop = full[10:12]
    want = llm.generate(prompt, max_new_tokens=30, random_seed=2, top_k=64, stop=[stop, "never"], logit_bias=no_eos(llm))[0]
    r = client.completions.create(model=name, prompt=prompt, max_tokens=30, seed=2, stop=[stop, "never"], logit_bias=no_eos(llm))
    assert r.choices[0].text == want.text == full[: full.index(stop)] and r.choices[0].finish_reason == "stop"

    token = llm.model.tokenizer.encode(" x")[-1]  # a bias of 100 makes it every token
    r = client.completions.create(model=name, prompt=prompt, max_tokens=5, seed=2, logit_bias={str(token): 100})
    assert r.usage.completion_tokens == 5 and r.choices[0].finish_reason == "length"
    assert r.choices[0].text == llm.model.tokenizer.decode([token] * 5) or r.choices[0].text == (llm.model.tokenizer.token_bytes(token) * 5).decode()


def test_logprobs_in_openai_shapes(client, llm, model_file):
    name = model_file.name
    want = llm.generate(chat_prompt(llm), max_new_tokens=6, random_seed=8, top_k=64, logprobs=True, top_logprobs=3)[0]
    tok = llm.model.tokenizer
    r = client.chat.completions.create(model=name, messages=CHAT, max_tokens=6, seed=8, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert [c.bytes for c in content] == [list(tok.token_bytes(t)) for t in want.tokens]
    assert [c.logprob for c in content] == pytest.approx([s.logprob for s in want.sampled], abs=1e-6)
    for c, s in zip(content, want.sampled):
        assert [(t.bytes, t.logprob) for t in c.top_logprobs] == [(list(tok.token_bytes(i)), pytest.approx(lp, abs=1e-6)) for i, lp in s.top]
        assert c.top_logprobs[0].logprob >= c.logprob - 1e-6
    streamed = [c for c in client.chat.completions.create(model=name, messages=CHAT, max_tokens=6, seed=8, logprobs=True, top_logprobs=3, stream=True)
                if c.choices and c.choices[0].logprobs is not None]
    assert [c.logprob for c in streamed[-1].choices[0].logprobs.content] == [c.logprob for c in content]

    want = llm.generate("The quick", max_new_tokens=5, random_seed=8, top_k=64, logprobs=True, top_logprobs=2)[0]
    r = client.completions.create(model=name, prompt="The quick", max_tokens=5, seed=8, logprobs=2)
    lp = r.choices[0].logprobs
    assert lp.token_logprobs == pytest.approx([s.logprob for s in want.sampled], abs=1e-6)
    assert lp.tokens == [tok.token_bytes(t).decode("utf-8", errors="replace") for t in want.tokens]
    assert [len(d) for d in lp.top_logprobs] == [len({tok.token_bytes(i).decode("utf-8", "replace") for i, _ in s.top}) for s in want.sampled]
    assert lp.text_offset[0] == len("The quick") and lp.text_offset == sorted(lp.text_offset)


def test_response_format_json_schema(client, llm, model_file):
    tok = llm.model.tokenizer  # the random model loves whitespace, which JSON allows anywhere: biased away
    no_space = {str(i): -100 for i in range(tok.vocab_size) if tok.token_bytes(i) and not tok.token_bytes(i).strip()}
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True}}
    r = client.chat.completions.create(model=model_file.name, messages=CHAT, max_tokens=200, seed=1, response_format=fmt, logit_bias=no_space)
    jsonschema.validate(json.loads(r.choices[0].message.content), SCHEMA)
    assert r.choices[0].finish_reason == "stop"
    want = llm.generate(chat_prompt(llm), max_new_tokens=200, random_seed=1, top_k=64, response_format=fmt, logit_bias=no_space)[0]
    assert r.choices[0].message.content == want.text
    r = client.chat.completions.create(model=model_file.name, messages=CHAT, max_tokens=200, seed=2, response_format={"type": "json_object"},
                                       logit_bias=no_space)
    assert r.choices[0].finish_reason == "stop" and isinstance(json.loads(r.choices[0].message.content), dict)


def test_forced_tool_calls(client, llm, model_file):
    tok = llm.model.tokenizer
    no_space = {str(i): -100 for i in range(tok.vocab_size) if tok.token_bytes(i) and not tok.token_bytes(i).strip()}
    weather = {"type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]}, "metric": {"type": "boolean"}},
               "required": ["city", "metric"], "additionalProperties": False}
    tools = [{"type": "function", "function": {"name": "weather", "description": "The weather in a city", "parameters": weather}},
             {"type": "function", "function": {"name": "clock", "parameters": {"type": "object", "properties": {"zone": {"enum": ["UTC"]}},
                                                                                "required": ["zone"], "additionalProperties": False}}}]
    options = dict(model=model_file.name, messages=CHAT, tools=tools, max_tokens=120, seed=4, logit_bias=no_space)
    r = client.chat.completions.create(tool_choice={"type": "function", "function": {"name": "weather"}}, **options)
    [call] = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None and call.id.startswith("call_")
    assert call.function.name == "weather"
    jsonschema.validate(json.loads(call.function.arguments), weather)
    # the same call from generate: the tools in the prompt, the output constrained to {name, arguments}
    prompt = strip_special(render_chat(TEMPLATE, CHAT, tools=tools, bos_token=tok.tokens[tok.bos_id]), tok)
    assert r.usage.prompt_tokens == len(tok.encode(prompt, add_special=True, parse_special=True))
    schema = {"type": "object", "properties": {"name": {"const": "weather"}, "arguments": weather}, "required": ["name", "arguments"],
              "additionalProperties": False}
    want = llm.generate(prompt, max_new_tokens=120, random_seed=4, top_k=64, logit_bias=no_space,
                        response_format={"type": "json_schema", "json_schema": {"name": "tool_call", "schema": schema, "strict": True}})[0]
    assert json.loads(want.text) == {"name": "weather", "arguments": json.loads(call.function.arguments)}

    chunks = list(client.chat.completions.create(tool_choice="required", stream=True, **options))
    deltas = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
    assert len(deltas) == 1 and deltas[0][0].function.name in ("weather", "clock") and chunks[-1].choices[0].finish_reason == "tool_calls"
    assert all(not c.choices[0].delta.content for c in chunks)
    none = client.chat.completions.create(tool_choice="none", **options)
    assert none.choices[0].message.tool_calls is None and none.usage.prompt_tokens < r.usage.prompt_tokens  # no tools in the prompt
    for choice, param in [({"type": "function", "function": {"name": "nope"}}, "tool_choice"), ("sometimes", "tool_choice")]:
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(tool_choice=choice, **options)
        assert e.value.body["param"] == param
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model=model_file.name, messages=CHAT, tool_choice="required")
    assert e.value.body["param"] == "tool_choice"


def test_auto_tool_calls_in_the_templates_format(client, llm, model_file):
    """tool_choice auto: the template is Llama 3.1's kind, so a bare {"name", "parameters"} answer is a
    call. The tiny model writes one when response_format makes it; the oracle is generate's text
    under the same format, read with json.loads. Then the call and the tool's answer go back in
    `messages` and reach the template."""
    from wgllm.openai_messages import template_messages

    tok = llm.model.tokenizer
    no_space = {str(i): -100 for i in range(tok.vocab_size) if tok.token_bytes(i) and not tok.token_bytes(i).strip()}
    weather = {"type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]}, "days": {"enum": [1, 2, 3]}},
               "required": ["city", "days"], "additionalProperties": False}
    tools = [{"type": "function", "function": {"name": "weather", "description": "The weather in a city", "parameters": weather}}]
    call_format = {"type": "json_schema", "json_schema": {"name": "call", "strict": True, "schema": {
        "type": "object", "properties": {"name": {"const": "weather"}, "parameters": weather}, "required": ["name", "parameters"], "additionalProperties": False}}}
    options = dict(model=model_file.name, messages=CHAT, tools=tools, max_tokens=120, seed=4, logit_bias=no_space, response_format=call_format)
    prompt = strip_special(render_chat(TEMPLATE, CHAT, tools=tools, bos_token=tok.tokens[tok.bos_id]), tok)
    want = llm.generate(prompt, max_new_tokens=120, random_seed=4, top_k=64, logit_bias=no_space, response_format=call_format)[0]
    doc = json.loads(want.text)

    r = client.chat.completions.create(**options)
    [call] = r.choices[0].message.tool_calls
    assert r.choices[0].finish_reason == "tool_calls" and r.choices[0].message.content is None
    assert call.id.startswith("call_") and call.type == "function" and call.function.name == doc["name"] == "weather"
    assert json.loads(call.function.arguments) == doc["parameters"] and r.usage.completion_tokens == len(want.tokens)

    chunks = list(client.chat.completions.create(stream=True, **options))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == ""  # the call's text is held back, never sent as content
    [[delta]] = [c.choices[0].delta.tool_calls for c in chunks if c.choices[0].delta.tool_calls]
    assert delta.index == 0 and delta.id.startswith("call_") and delta.function.name == "weather"
    assert json.loads(delta.function.arguments) == doc["parameters"] and chunks[-1].choices[0].finish_reason == "tool_calls"

    # without the format the tiny model writes text, which is content as generate gives it
    free = client.chat.completions.create(**{**options, "response_format": None, "max_tokens": 12})
    assert free.choices[0].message.tool_calls is None
    assert free.choices[0].message.content == llm.generate(prompt, max_new_tokens=12, random_seed=4, top_k=64, logit_bias=no_space)[0].text

    # the call and the tool's answer, sent back: rendered with the arguments as an object
    turns = [*CHAT, {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
             {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'}]
    r = client.chat.completions.create(model=model_file.name, messages=turns, tools=tools, max_tokens=6, seed=2)
    prompt = strip_special(render_chat(TEMPLATE, template_messages(turns), tools=tools, bos_token=tok.tokens[tok.bos_id]), tok)
    assert '<assistant>{"name": "weather", "parameters": ' + json.dumps(doc["parameters"]) + "}</assistant>" in prompt
    assert '<|start_header_id|>ipython<|end_header_id|>{"temperature": 21}' in prompt
    want = llm.generate(prompt, max_new_tokens=6, random_seed=2, top_k=64)[0]
    assert r.usage.prompt_tokens == want.prompt_tokens and r.choices[0].message.content == want.text


# -- the queue ---------------------------------------------------------------------------------------
class Stream:
    """A raw streaming request read on a thread: its events and the time it ended."""

    def __init__(self, server, path: str, body: dict):
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        self.conn.request("POST", path, json.dumps({**body, "stream": True}), {"content-type": "application/json"})
        self.response = self.conn.getresponse()
        self.first = self.response.readline()  # the first event's line: the generation is running
        self.ended: float | None = None

    def read_all(self) -> list:
        raw = self.first + self.response.read()
        self.ended = time.monotonic()
        return sse_events(raw)

    def close(self) -> None:
        self.conn.sock.close()  # a client that goes away mid-stream
        self.conn.close()


def log_lines(server, ident: str) -> list[str]:
    """The server's line for each generation (of request `ident`; "": all)."""
    return [line for line in server.log.read_text().splitlines() if line.startswith(f"serve-models: {ident}") and " prompt tokens, " in line]


def wait_for_queue(server, *, queued: int, running: int | None = None, seconds: float = 60.0) -> dict:
    """GET /health until the queue holds `queued` jobs (and `running` runs, when given)."""
    deadline = time.monotonic() + seconds
    while True:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=10) as r:
            state = json.loads(r.read())
        if state["queued"] == queued and running in (None, state["running"]):
            return state
        assert time.monotonic() < deadline, f"the queue never reached queued={queued} running={running}: {state}"
        time.sleep(0.02)


def test_fifo_queue_full_and_disconnect(server, client, llm, model_file):
    name = model_file.name
    long = {"model": name, "messages": CHAT, "max_tokens": 600, "seed": 1, "logit_bias": no_eos(llm)}
    a = Stream(server, "/v1/chat/completions", long)
    assert a.response.status == 200 and a.first.startswith(b"data: ")
    a_id = json.loads(a.first[6:])["id"]

    # B waits behind A (queue of 1); C finds the queue full
    results: dict = {}

    def b() -> None:
        results["b"] = client.completions.create(model=name, prompt="She sells", max_tokens=8, seed=6)
        results["b_ended"] = time.monotonic()

    tb = threading.Thread(target=b)
    tb.start()
    state = wait_for_queue(server, queued=1)  # B is in the queue (not a sleep: the machine may be slow)
    assert state == {"status": "ok", "model": name, "running": 1, "queued": 1, "queue_size": 1}
    with pytest.raises(openai.RateLimitError) as e:
        client.completions.create(model=name, prompt="She sells", max_tokens=8, seed=6)
    assert e.value.status_code == 429 and e.value.body["code"] == "rate_limit_exceeded" and e.value.response.headers["retry-after"] == "1"
    events = a.read_all()
    tb.join(60)
    assert a.ended < results["b_ended"]  # first come, first served
    assert events[-1] == "[DONE]" and events[-2]["choices"][0]["finish_reason"] == "length"
    want = llm.generate(chat_prompt(llm), max_new_tokens=600, random_seed=1, top_k=64, logit_bias=no_eos(llm))[0].text
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events[:-1]) == want
    assert results["b"].choices[0].text == llm.generate("She sells", max_new_tokens=8, random_seed=6, top_k=64)[0].text

    # a client that disconnects mid-stream: its generation stops, the next request is served at once
    a = Stream(server, "/v1/chat/completions", long)
    a_id = json.loads(a.first[6:])["id"]
    a.close()
    started = time.monotonic()
    r = client.completions.create(model=name, prompt="She sells", max_tokens=8, seed=6)
    assert r.choices[0].text == results["b"].choices[0].text
    assert time.monotonic() - started < 5.0
    for _ in range(100):
        if log_lines(server, a_id):
            break
        time.sleep(0.05)
    [line] = log_lines(server, a_id)
    generated = int(line.split(" generated")[0].rsplit(" ", 1)[1])
    assert "(cancelled)" in line and generated < 600, line

    # a request that disconnects while queued never runs
    for _ in range(100):  # the last request's log line may trail its answer
        if log_lines(server, r.id):
            break
        time.sleep(0.05)
    generations = len(log_lines(server, ""))
    a = Stream(server, "/v1/chat/completions", long)
    queued = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    queued.request("POST", "/v1/completions", json.dumps({"model": name, "prompt": "queued", "max_tokens": 4, "seed": 77}), {"content-type": "application/json"})
    wait_for_queue(server, queued=1)
    queued.sock.close()
    wait_for_queue(server, queued=0, running=1)  # the disconnect took it out of the queue while A runs
    a.close()
    wait_for_queue(server, queued=0, running=0)
    r = client.completions.create(model=name, prompt="She sells", max_tokens=8, seed=6)  # served: the queue has room again
    assert r.choices[0].text == results["b"].choices[0].text
    for _ in range(100):
        if len(log_lines(server, "")) >= generations + 2:
            break
        time.sleep(0.05)
    time.sleep(0.3)
    lines = log_lines(server, "")
    assert len(lines) == generations + 2, lines[generations:]  # A (cancelled) and the last one: never the queued one


# -- bad requests ------------------------------------------------------------------------------------
def test_bad_requests_get_openai_errors(server, client, llm, model_file):
    name = model_file.name

    def fails(error, param, **kwargs):
        create = client.chat.completions.create if "messages" in kwargs else client.completions.create
        with pytest.raises(error) as e:
            create(model=kwargs.pop("model", name), **kwargs)
        body = e.value.body
        assert set(body) == {"message", "type", "param", "code"} and body["type"] == "invalid_request_error" and body["param"] == param, body
        return body

    assert fails(openai.NotFoundError, "model", model="gpt-4o", messages=CHAT)["code"] == "model_not_found"
    assert fails(openai.BadRequestError, "max_tokens", prompt="hi", max_tokens=CONTEXT)["code"] == "context_length_exceeded"
    assert fails(openai.BadRequestError, "max_tokens", prompt="hi", max_tokens=400, n=3)["code"] == "context_length_exceeded"
    assert fails(openai.BadRequestError, "prompt", prompt="fox " * CONTEXT)["code"] == "context_length_exceeded"
    bad_schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"a": {"type": "frobnicate"}}}}}
    assert "JSON schema" in fails(openai.BadRequestError, "response_format", messages=CHAT, response_format=bad_schema)["message"]
    assert "outside the vocabulary" in fails(openai.BadRequestError, "logit_bias", prompt="hi", logit_bias={"100000": 5})["message"]
    fails(openai.BadRequestError, "top_p", prompt="hi", top_p=1.5)
    fails(openai.BadRequestError, "temperature", messages=CHAT, temperature=-1)
    fails(openai.BadRequestError, "top_k", prompt="hi", extra_body={"top_k": 65})
    fails(openai.BadRequestError, "n", prompt="hi", n=0)
    fails(openai.BadRequestError, "stop", prompt="hi", stop=[""])
    fails(openai.BadRequestError, "top_logprobs", messages=CHAT, top_logprobs=2)
    fails(openai.BadRequestError, "logprobs", prompt="hi", logprobs=21)
    fails(openai.BadRequestError, "messages", messages=[])
    fails(openai.BadRequestError, "messages", messages=[{"role": "robot", "content": "x"}])  # the template's raise_exception
    fails(openai.BadRequestError, "messages[0].tool_call_id", messages=[{"role": "tool", "content": "x"}])
    fails(openai.BadRequestError, "messages[1].tool_calls[0]", messages=[CHAT[1], {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f"}}]}])
    fails(openai.BadRequestError, "stream_options", prompt="hi", stream_options={"include_usage": True})
    fails(openai.BadRequestError, "frobnicate", prompt="hi", extra_body={"frobnicate": 1})
    with pytest.raises(openai.BadRequestError):  # in a stream too: the error comes before any event
        list(client.completions.create(model=name, prompt="hi", top_p=2, stream=True))

    status, headers, body = post(server, "/v1/chat/completions", b'{"model": ')
    assert status == 400 and headers["content-type"] == "application/json" and json.loads(body)["error"]["type"] == "invalid_request_error"
    status, _, body = post(server, "/v1/completions", b"[1, 2]")
    assert status == 400 and "JSON object" in json.loads(body)["error"]["message"]
    status, _, body = server.request("GET", "/v1/models/nope")
    assert status == 404 and json.loads(body)["error"]["code"] == "model_not_found"
    # the server is fine after all that
    assert client.completions.create(model=name, prompt="hi", max_tokens=2, seed=1).usage.completion_tokens >= 1


def test_no_chat_template_and_api_off(tmp_path):
    """A model without a template: 400 on chat, completions served; --no-api: /v1/ answers 404."""
    from tiny_models import convert_tiny

    model = convert_tiny("llama", 32, tmp_path / "plain.gguf")
    s = Server("--model", model, "--web-dir", write_web(tmp_path / "web"), "--context", 64, log=tmp_path / "log").wait_ready()
    try:
        c = openai.OpenAI(base_url=f"http://127.0.0.1:{s.port}/v1", api_key="none", max_retries=0)
        with pytest.raises(openai.BadRequestError) as e:
            c.chat.completions.create(model="plain.gguf", messages=CHAT)
        assert e.value.body["code"] == "no_chat_template" and "chat template" in e.value.body["message"]
        assert c.completions.create(model="plain.gguf", prompt="The", max_tokens=3).usage.completion_tokens == 3
        assert "context 64 tokens" in s.log.read_text()
    finally:
        s.stop()
    s = Server("--model", model, "--no-api", "--web-dir", write_web(tmp_path / "web2"), log=tmp_path / "log2").wait_ready()
    try:
        status, _, body = post(s, "/v1/completions", {"model": "plain.gguf", "prompt": "x"})
        assert status == 404 and json.loads(body)["error"]["code"] == "api_off"
        assert "OpenAI API" not in s.log.read_text()
    finally:
        s.stop()


def test_api_options_are_checked(tmp_path, capsys):
    from test_server import write_model

    from wgllm.server import main

    not_runnable = write_model(tmp_path / "embeddings-only.gguf")  # a valid GGUF, not a model the engine can run
    for argv, fragment in [(["--models-dir", str(tmp_path), "--api"], "--api serves one model: name it with --model FILE"),
                           (["--model", str(not_runnable), "--api"], "--api: cannot run"),
                           (["--model", str(not_runnable), "--context", "1"], "--context 1"),
                           (["--model", str(not_runnable), "--queue", "-1"], "--queue -1")]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and "serve-models: error:" in err and fragment in err, err
