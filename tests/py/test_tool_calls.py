"""Tool calls in the model's own format (wgllm.tool_calls and its port web/src/tool_calls.ts) against
the shared vectors in tests/data/tool_call_vectors.json, whole and streamed; and a tool conversation
(the assistant's tool_calls, the tools' answers) through a real tool-capable template (Qwen2.5's,
tests/data/chat_templates) rendered by render_chat as by transformers' own renderer."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from wgllm.chat import render_chat
from wgllm.tool_calls import ToolCallStream, detect_format, parse_tool_calls, split_calls

ROOT = Path(__file__).resolve().parents[2]
VECTORS = json.loads((ROOT / "tests" / "data" / "tool_call_vectors.json").read_text())
ESBUILD = ROOT / "web" / "node_modules" / ".bin" / "esbuild"
QWEN25 = (ROOT / "tests" / "data" / "chat_templates" / "qwen2.5-instruct.jinja").read_text()
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city, now",
                                           "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
                                                          "required": ["city"]}}}]
# a tool conversation as OpenAI's clients send it back: the assistant's call (arguments as JSON text), the tool's answer
CONVERSATION = [
    {"role": "system", "content": "You are brief."},
    {"role": "user", "content": "Weather in Zürich?"},
    {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Zürich"}'}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": '{"temperature": 21}'},
    {"role": "user", "content": "And in Oslo?"},
]


def shape(calls: list[dict], want: list) -> list:
    return [[c["function"]["name"], json.loads(c["function"]["arguments"]), *([c["id"]] if len(w) > 2 else [])] for c, w in zip(calls, want)]


def wanted(want: list) -> list:
    return [[name, json.loads(args), *rest] for name, args, *rest in want]


def test_format_from_the_template():
    for template, fmt in VECTORS["templates"]:
        assert detect_format(template) == fmt, template
    assert detect_format(QWEN25) == "hermes"
    with pytest.raises(ValueError, match="unknown tool-call format"):
        split_calls("xml", "<x/>")


@pytest.mark.parametrize("case", VECTORS["cases"], ids=lambda c: f"{c['format']}: {c['about']}")
def test_vectors_whole_and_streamed(case):
    content, calls = parse_tool_calls(case["format"], case["text"])
    assert content == case["content"] and len(calls) == len(case["calls"])
    assert shape(calls, case["calls"]) == wanted(case["calls"])
    for c in calls:
        assert c["type"] == "function" and re.fullmatch(r"[A-Za-z0-9]{9}" if case["format"] == "mistral" else r"call_[0-9a-f]{24}", c["id"]), c
    for k in (1, 2, 5, 13):
        stream = ToolCallStream(case["format"])
        sent = "".join(stream.push(case["text"][i : i + k]) for i in range(0, len(case["text"]), k))
        rest, streamed = stream.finish()
        assert shape(streamed, case["calls"]) == wanted(case["calls"]), k
        assert ((sent + rest).strip() or None if case["calls"] else sent + rest) == case["content"], (k, sent, rest)
        if case["calls"] and case["format"] == "hermes":  # the text before the first call goes out at once
            assert sent == case["text"][: case["text"].index("<tool_call>")]


def test_stream_holds_only_what_may_start_a_call():
    s = ToolCallStream("hermes")
    assert s.push("Hi <tool") == "Hi " and s.push("box> ok") == "<toolbox> ok" and s.push(" <tool_call>{") == " " and s.push("}") == ""
    assert s.finish() == ("<tool_call>{}", [])  # no name: content after all
    s = ToolCallStream("llama3")
    assert s.push(" ") == "" and s.push(" {") == "" and s.push('"name"') == ""
    s = ToolCallStream("llama3")
    assert s.push("<|python") == "" and s.push("x") == "<|pythonx" and s.push(" {") == " {"
    assert ToolCallStream(None).push("<tool_call>") == "<tool_call>"


def test_typescript_port_gives_the_same_answers(tmp_path):
    bundle = tmp_path / "tool_calls.mjs"
    subprocess.run([str(ESBUILD), str(ROOT / "web" / "src" / "tool_calls.ts"), "--bundle", "--platform=node", "--format=esm",
                    "--log-level=warning", f"--outfile={bundle}"], check=True)
    done = subprocess.run(["node", str(ROOT / "tests" / "py" / "tool_call_vectors.mjs"), str(bundle), str(ROOT / "tests" / "data" / "tool_call_vectors.json")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert json.loads(done.stdout)["checked"] == len(VECTORS["templates"]) + 5 * len(VECTORS["cases"])


def test_tool_conversation_renders_as_transformers():
    """The assistant's tool_calls and role "tool" messages reach the template as they are (arguments
    parsed into an object first, as the OpenAI layers do: templates write them with tojson)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    from wgllm.openai_messages import template_messages

    messages = template_messages(CONVERSATION)
    assert messages[2]["tool_calls"][0]["function"]["arguments"] == {"city": "Zürich"} and CONVERSATION[2]["tool_calls"][0]["function"]["arguments"] == '{"city": "Zürich"}'
    for tools in (TOOLS, None):
        for prompt in (True, False):
            want = render_jinja_template([messages], tools=tools, chat_template=QWEN25, add_generation_prompt=prompt)[0][0]
            assert render_chat(QWEN25, messages, tools=tools, add_generation_prompt=prompt) == want
    text = render_chat(QWEN25, messages, tools=TOOLS)
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Zürich"}}\n</tool_call>' in text
    assert "<|im_start|>user\n<tool_response>\n{\"temperature\": 21}\n</tool_response><|im_end|>" in text
    assert '"name": "get_weather"' in text.split("<tools>\n")[1].split("</tools>")[0]  # the tools, described in the system turn


def test_server_streams_and_answers_hermes_calls():
    """serve-models' answer shaping for a Hermes-format model, without a model: an answer's pieces
    as the worker posts them (text, then a call split across pieces) through GenerationResponse's
    stream, and the same answer whole through OpenAIApi.choice."""
    import asyncio

    from wgllm.generation import Generation
    from wgllm.openai_api import GenerationResponse, Job, OpenAIApi, Plan

    text = "Let me check.\n<tool_call>\n" + '{"name": "get_weather", "arguments": {"city": "Paris"}}' + "\n</tool_call>"
    pieces = ["Let me", " check.\n<tool", "_call>\n{\"name\": \"get_we", "ather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"]
    assert "".join(pieces) == text
    api = object.__new__(OpenAIApi)
    api.name = "m.gguf"
    plan = Plan("chat", [1, 2], 0, 1, None, 0, [], None, {}, True, False, False, 0, tool_format="hermes", id="chatcmpl-x")
    answer = Generation(text=text, tokens=[5] * 9, finish_reason="stop")
    whole = api.choice(plan, 0, answer)
    assert whole["finish_reason"] == "tool_calls" and whole["message"]["content"] == "Let me check."
    [call] = whole["message"]["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'} and call["id"].startswith("call_")

    async def run() -> list:
        job = Job(plan, asyncio.get_running_loop())
        for piece in pieces:
            job.post("piece", 0, piece)
        job.post("done", 0, answer)
        job.post("end")
        sent = []

        async def send(message):
            sent.append(message)

        await GenerationResponse(api, job).stream(send)
        body = b"".join(m.get("body", b"") for m in sent).decode()
        return [json.loads(e[6:]) for e in body.split("\n\n") if e.startswith("data: {")]

    chunks = asyncio.run(run())
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert "".join(d.get("content", "") for d in deltas) == "Let me check.\n"  # sent as it came, up to the call
    [[delta]] = [d["tool_calls"] for d in deltas if "tool_calls" in d]
    assert delta["index"] == 0 and delta["type"] == "function" and delta["function"] == call["function"]
    assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "tool_calls"
