"""A chat request's messages and tools, checked, as the chat template gets them (openai_api.py's
part that reads OpenAI's chat fields; errors are OpenAI's error objects naming the field).

Messages: {role, content} with content a string, a list of text parts (joined) or null; an
assistant's `tool_calls` ([{id, type: "function", function: {name, arguments}}]) and a tool's
answer ({role: "tool", tool_call_id, content}) reach the template as they are, as transformers'
apply_chat_template passes them, except that each call's `arguments`, JSON text in OpenAI's API,
becomes the object it holds (as vLLM does): templates write them with `tojson` (Qwen2.5, Llama 3.1).
"""

from __future__ import annotations

import json

from starlette.responses import JSONResponse


class ApiError(Exception):
    """An OpenAI error object: {"error": {"message", "type", "param", "code"}} with its HTTP status."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None, type: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self, headers: dict | None = None) -> JSONResponse:
        return JSONResponse(self.body(), self.status, headers=headers)


def bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param, code)


def template_messages(messages: list[dict]) -> list[dict]:
    """`messages` with each tool call's arguments (JSON text) as the object they hold (text that is not
    a JSON object stays as it is)."""
    out = []
    for m in messages:
        calls = m.get("tool_calls")
        if isinstance(calls, list):
            m = {**m, "tool_calls": [_parsed_arguments(c) for c in calls]}
        out.append(m)
    return out


def _parsed_arguments(call):
    f = call.get("function") if isinstance(call, dict) else None
    if not isinstance(f, dict) or not isinstance(f.get("arguments"), str):
        return call
    try:
        value = json.loads(f["arguments"])
    except ValueError:
        return call
    return {**call, "function": {**f, "arguments": value}} if isinstance(value, dict) else call


def check_messages(body: dict) -> list[dict]:
    """The request's messages, checked, as the template gets them."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise bad("messages must be a non-empty list of {role, content} objects", "messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise bad(f"messages[{i}] must be an object with a string role, got {json.dumps(m)[:200]}", f"messages[{i}]")
        content = m.get("content")
        if isinstance(content, list):  # content parts: the text ones, joined (a GGUF template expects a string)
            for j, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise bad(f"messages[{i}].content[{j}] must be a text part {{type: 'text', text: ...}}: this model reads text only",
                              f"messages[{i}].content[{j}]")
            m = {**m, "content": "".join(part["text"] for part in content)}
        elif content is not None and not isinstance(content, str):
            raise bad(f"messages[{i}].content must be a string or a list of text parts, got {json.dumps(content)[:200]}", f"messages[{i}].content")
        calls = m.get("tool_calls")
        if calls is not None:
            if m["role"] != "assistant" or not isinstance(calls, list):
                raise bad(f"messages[{i}].tool_calls must be a list, in an assistant's message", f"messages[{i}].tool_calls")
            for j, c in enumerate(calls):
                f = c.get("function") if isinstance(c, dict) and c.get("type", "function") == "function" else None
                if not isinstance(f, dict) or not isinstance(f.get("name"), str) or not isinstance(f.get("arguments"), str):
                    raise bad(f"messages[{i}].tool_calls[{j}] must be {{id, type: 'function', function: {{name, arguments: JSON text}}}}, "
                              f"got {json.dumps(c)[:200]}", f"messages[{i}].tool_calls[{j}]")
        if m["role"] == "tool" and not isinstance(m.get("tool_call_id"), str):
            raise bad(f"messages[{i}]: a tool's message needs tool_call_id, the id of the call it answers", f"messages[{i}].tool_call_id")
        out.append(m)
    return template_messages(out)


def check_tools(body: dict) -> tuple[list | None, dict | None]:
    """The tools the template sees, and the JSON schema a forced call must follow (tool_choice
    "required": any one tool, {"type": "function", "function": {"name"}}: that one; else None)."""
    tools, choice = body.get("tools"), body.get("tool_choice")
    if tools is None:
        if choice is not None:
            raise bad("tool_choice is only allowed when tools are given", "tool_choice")
        return None, None
    if not isinstance(tools, list) or not tools:
        raise bad("tools must be a non-empty list of {type: 'function', function: {name, description, parameters}}", "tools")
    calls = {}
    for i, t in enumerate(tools):
        f = t.get("function") if isinstance(t, dict) and t.get("type") == "function" else None
        if not isinstance(f, dict) or not isinstance(f.get("name"), str) or not f["name"]:
            raise bad(f"tools[{i}] must be {{type: 'function', function: {{name, description, parameters}}}}", f"tools[{i}]")
        parameters = f.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict):
            raise bad(f"tools[{i}].function.parameters must be a JSON schema object", f"tools[{i}].function.parameters")
        calls[f["name"]] = {"type": "object", "properties": {"name": {"const": f["name"]}, "arguments": parameters},
                            "required": ["name", "arguments"], "additionalProperties": False}
    if choice is None or choice == "auto":
        return tools, None
    if choice == "none":
        return None, None  # the model is not to call tools: the template does not offer them
    if choice == "required":
        schema = next(iter(calls.values())) if len(calls) == 1 else {"anyOf": list(calls.values())}
        return tools, schema
    name = choice.get("function", {}).get("name") if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(choice.get("function"), dict) else None
    if name is None:
        raise bad('tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}', "tool_choice")
    if name not in calls:
        raise bad(f"tool_choice names the function {name!r}, which is not among the tools ({', '.join(calls)})", "tool_choice")
    return tools, calls[name]
