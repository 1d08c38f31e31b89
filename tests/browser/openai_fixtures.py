"""Fixtures for tests/browser/openai.spec.ts: what Python's LlmInference.generate answers to the
prompts the browser's ChatEngine renders.

    python tests/browser/openai_fixtures.py OUT_DIR

Builds the tiny Phi-2 (F32) with a ChatML chat template in its GGUF (chat_template.jinja beside its
tokenizer), renders each request's messages with jinja2 as transformers does, and writes
expected.json from wgllm.inference.LlmInference (WebGPU on this machine's lavapipe, f32 KV cache as
on the browser's SwiftShader, cpu kernels): per request, the answers' texts, tokens, finish reasons,
logprobs and the prompt's token count, with the request's options mapped as openai.ts maps them
(max_tokens -> max_new_tokens, seed -> random_seed, ...). Work already done (same inputs) is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("XDG_RUNTIME_DIR", "/tmp")

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "py"))

CONTEXT = 512
QWEN25 = REPO / "tests" / "data" / "chat_templates" / "qwen2.5-instruct.jinja"  # a real Hermes-format template
# ChatML, with the tools' names in a system turn (the tiny context has no room for their schemas), an assistant's calls written as Llama 3.1 writes them
# (bare {"name", "parameters"}) and a tool's answer under Llama 3.1's ipython header, which makes
# openai.ts parse calls in that format (tool_calls.ts)
TEMPLATE = (
    "{% if tools %}{{ '<|im_start|>system\\n<tools>' }}{% for t in tools %}{{ t.function.name + ' ' }}{% endfor %}{{ '</tools><|im_end|>\\n' }}{% endif %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'tool' %}{{ '<|im_start|><|start_header_id|>ipython<|end_header_id|>\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% elif message.tool_calls %}{{ '<|im_start|>assistant\\n' }}{% for c in message.tool_calls %}"
    "{{ '{\"name\": \"' + c.function.name + '\", \"parameters\": ' + (c.function.arguments | tojson) + '}' }}{% endfor %}{{ '<|im_end|>\\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Name a colour."}]
FOLLOW_UP = "And another one?"
COLOR = {"type": "object", "properties": {"color": {"type": "string", "enum": ["red", "green", "blue"]}}, "required": ["color"], "additionalProperties": False}
# request name -> (messages or None for the multi-turn one, OpenAI request fields)
CHAT = {
    "basic": {"temperature": 1.0, "top_p": 0.9, "max_tokens": 24, "seed": 3},
    "n_logprobs": {"temperature": 1.0, "n": 2, "max_completion_tokens": 12, "seed": 5, "logprobs": True, "top_logprobs": 2, "frequency_penalty": 0.5},
    "json": {"temperature": 1.0, "max_tokens": 120, "seed": 1, "response_format": {"type": "json_schema", "json_schema": {"name": "color", "schema": COLOR, "strict": True}}},
    "greedy_n": {"temperature": 0, "n": 2, "max_tokens": 8},
}
WEATHER = {"type": "object", "properties": {"city": {"enum": ["Paris", "Oslo"]}, "days": {"enum": [1, 2, 3]}}, "required": ["city", "days"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": WEATHER}}]
# a free answer that is a call in the template's format: response_format makes the tiny model write one
CALL_FORMAT = {"type": "json_schema", "json_schema": {"name": "call", "strict": True, "schema": {
    "type": "object", "properties": {"name": {"const": "weather"}, "parameters": WEATHER}, "required": ["name", "parameters"], "additionalProperties": False}}}
# what a forced call is constrained to (tool_choice names the function)
FORCED_FORMAT = {"type": "json_schema", "json_schema": {"name": "tool_call", "strict": True, "schema": {
    "type": "object", "properties": {"name": {"const": "weather"}, "arguments": WEATHER}, "required": ["name", "arguments"], "additionalProperties": False}}}
TOOL_REQUESTS = {
    "auto": ({"tools": TOOLS, "temperature": 1.0, "max_tokens": 60, "seed": 2, "response_format": CALL_FORMAT}, CALL_FORMAT),
    "forced": ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "weather"}}, "temperature": 1.0, "max_tokens": 60, "seed": 2}, FORCED_FORMAT),
}
# the call sent back with the tool's answer
TOOL_TURNS = [*MESSAGES, {"role": "assistant", "content": None, "tool_calls": [{"id": "call_0", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo", "days": 2}'}}]},
              {"role": "tool", "tool_call_id": "call_0", "content": "sunny"}]
COMPLETION = {"prompt": "The quick brown", "temperature": 1.0, "seed": 7, "logprobs": 2, "top_k": 20, "min_p": 0.05}


def inputs_digest() -> str:
    h = hashlib.sha256()
    files = [Path(__file__), REPO / "shaders/sample.wgsl", QWEN25, *sorted((REPO / "py" / "wgllm").rglob("*.py"))]
    for f in files:
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def generate_options(request: dict) -> dict:
    """An OpenAI request's fields as LlmInference.generate's options (openai.ts's mapping)."""
    out = {}
    for k, v in request.items():
        if k in ("max_tokens", "max_completion_tokens"):
            out["max_new_tokens"] = v
        elif k == "seed":
            out["random_seed"] = v
        elif k == "prompt":
            continue
        elif k == "logprobs" and not isinstance(v, bool):  # completions' legacy integer
            out.update(logprobs=True, top_logprobs=v)
        else:
            out[k] = v
    return out


def answers(gens) -> dict:
    return {
        "texts": [g.text for g in gens],
        "tokens": [g.tokens for g in gens],
        "finish": [g.finish_reason for g in gens],
        "logprobs": [[{"logprob": s.logprob, "top": s.top} for s in g.sampled] if g.sampled and g.sampled[0].logprob is not None else None for g in gens],
        "prompt_tokens": gens[0].prompt_tokens,
    }


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    digest = inputs_digest()
    expected_path = out / "expected.json"
    if expected_path.is_file() and json.loads(expected_path.read_text()).get("digest") == digest:
        return
    import jinja2.sandbox
    from tiny_models import tiny_model

    from wgllm.chat import render_chat
    from wgllm.convert import ConversionConfig, convert_checkpoint
    from wgllm.inference import LlmInference
    from wgllm.openai_messages import template_messages

    path = out / "phi2-chat.gguf"
    folder = tiny_model("phi2").folder
    (folder / "chat_template.jinja").write_text(TEMPLATE)
    tmp = path.with_suffix(".tmp")
    convert_checkpoint(ConversionConfig(str(folder), "safetensors", output_file=str(tmp), attention_quant_bits=32, feedforward_quant_bits=32, embedding_quant_bits=32))
    tmp.rename(path)

    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def render(messages: list[dict]) -> str:
        return env.from_string(TEMPLATE).render(messages=messages, add_generation_prompt=True, bos_token="", eos_token="")

    expected: dict = {"digest": digest, "context": CONTEXT, "messages": MESSAGES, "follow_up": FOLLOW_UP, "chat": {}}
    with LlmInference.create_from_options(str(path), backend="gpu", force_f32=True, kernels="cpu", max_tokens=CONTEXT) as llm:
        assert llm.model.gguf.get("tokenizer.chat_template") == TEMPLATE
        assert not llm.model.tokenizer.add_bos  # so the rendered text is the prompt as it stands
        prompt = render(MESSAGES)
        for name, request in CHAT.items():
            expected["chat"][name] = {"request": request, "rendered": prompt, **answers(llm.generate(prompt, **generate_options(request)))}
        first = expected["chat"]["basic"]
        assert first["finish"] == ["length"] and expected["chat"]["json"]["finish"] == ["stop"], (first["finish"], expected["chat"]["json"])
        turns = [*MESSAGES, {"role": "assistant", "content": first["texts"][0]}, {"role": "user", "content": FOLLOW_UP}]
        expected["multi_turn"] = {"request": CHAT["basic"], "messages": turns, "rendered": render(turns), **answers(llm.generate(render(turns), **generate_options(CHAT["basic"])))}
        completion = {**COMPLETION, "max_tokens": 16}  # OpenAI's default for completions
        expected["completion"] = {"request": COMPLETION, **answers(llm.generate(COMPLETION["prompt"], **generate_options(completion)))}
        expected["vocab"] = llm.model.config.n_vocab
        # tools: prompts rendered by wgllm.chat (transformers' rules: its tojson keeps the JSON as it is)
        expected["tools"] = {}
        tok = llm.model.tokenizer  # the random model loves white space, which JSON allows anywhere: biased away
        no_space = {str(i): -100 for i in range(tok.vocab_size) if tok.token_bytes(i) and not tok.token_bytes(i).strip()}
        for name, (request, fmt) in TOOL_REQUESTS.items():
            request = {**request, "logit_bias": no_space}
            rendered = render_chat(TEMPLATE, MESSAGES, tools=TOOLS)
            options = generate_options({k: v for k, v in request.items() if k not in ("tools", "tool_choice", "response_format")})
            gens = llm.generate(rendered, response_format=fmt, **options)
            assert gens[0].finish_reason == "stop", (name, gens[0].text)  # a whole call, or the test proves nothing
            expected["tools"][name] = {"request": request, "rendered": rendered, **answers(gens)}
        rendered = render_chat(TEMPLATE, template_messages(TOOL_TURNS), tools=TOOLS)
        assert '"parameters": {"city": "Oslo", "days": 2}' in rendered and "ipython<|end_header_id|>\nsunny" in rendered
        request = {"tools": TOOLS, "temperature": 1.0, "max_tokens": 8, "seed": 4}
        # Qwen2.5's template with the tool conversation: the prompt the browser must render (its answer is faked there)
        expected["hermes"] = {"template": QWEN25.read_text(), "messages": TOOL_TURNS, "tools": TOOLS,
                              "rendered": render_chat(QWEN25.read_text(), template_messages(TOOL_TURNS), tools=TOOLS)}
        expected["tools"]["turns"] = {"request": request, "messages": TOOL_TURNS, "rendered": rendered,
                                      **answers(llm.generate(rendered, **generate_options({"temperature": 1.0, "max_tokens": 8, "seed": 4})))}

    tmp = expected_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(expected))
    tmp.rename(expected_path)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
