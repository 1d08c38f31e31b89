"""Tool calls written in the model's own format, parsed out of its answer (OpenAI's tool_choice "auto").

The format is picked from the chat template's text, with the markers llama.cpp's server looks for
(common/chat.cpp), first match wins:

    "hermes"   the template mentions <tool_call> (Hermes 2/3 Pro, Qwen2.5, Qwen3, SmolLM3, ...):
               any number of  <tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>  blocks,
               the text around them is the content (a last block may lack its closing tag)
    "llama3"   the template has <|start_header_id|>ipython<|end_header_id|> (Llama 3.1, 3.2, 3.3):
               the answer starts with {"name": ..., "parameters": {...}} (what the template asks for;
               "arguments" is taken too, and a leading "type": "function"), more objects may follow,
               separated by ";" or white space; text after them is the content
    "mistral"  the template mentions [TOOL_CALLS] (Mistral 7B v0.3, Nemo):
               [TOOL_CALLS][{"name": ..., "arguments": {...}, "id": ...}, ...] after any text
    None       any other template: the answer is content, never parsed

A call's name must be a non-empty string and its arguments a JSON object (or a string holding one).
Text that starts a call but does not parse as one (cut short by max_tokens, bad JSON, no name) is
not a call: the whole answer falls back to plain content, as llama.cpp's server does. Arguments
come back as compact JSON text (separators "," and ":", non-ASCII kept), the same bytes as
JavaScript's JSON.stringify gives in web/src/tool_calls.ts, which ports this module; both are checked
against tests/data/tool_call_vectors.json.

ToolCallStream holds back streamed text from where a call may begin (the marker, or a prefix of it
at the end of the text so far; for "llama3", everything while the answer may still be a bare JSON
call) and passes the rest through at once.
"""

from __future__ import annotations

import json
import re
import secrets
import string

FORMATS = ("hermes", "llama3", "mistral")
_MARKERS = {"hermes": "<tool_call>", "mistral": "[TOOL_CALLS]"}
_HERMES_CLOSE = "</tool_call>"
_LLAMA_TAG = "<|python_tag|>"
_DECODER = json.JSONDecoder()


def detect_format(template: str | None) -> str | None:
    """The tool-call format `template` teaches its model (see the module's docstring), or None."""
    if not template:
        return None
    if "<tool_call>" in template:
        return "hermes"
    if "<|start_header_id|>ipython<|end_header_id|>" in template:
        return "llama3"
    if "[TOOL_CALLS]" in template:
        return "mistral"
    return None


def _arguments(value) -> str | None:
    """A call's arguments as compact JSON text, or None when they are not a JSON object."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return None
    if not isinstance(value, dict):
        return None
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _call(obj, args_key: str) -> dict | None:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"] or args_key not in obj:
        return None
    arguments = _arguments(obj[args_key])
    if arguments is None:
        return None
    call = {"name": obj["name"], "arguments": arguments}
    if isinstance(obj.get("id"), str):
        call["id"] = obj["id"]
    return call


def _json_at(text: str, i: int):
    """The JSON value at text[i:] (after white space) and the index after it; ValueError if none."""
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return _DECODER.raw_decode(text, i)


def _parse_hermes(text: str) -> tuple[str, list[dict]] | None:
    content, calls, i = [], [], 0
    while (start := text.find(_MARKERS["hermes"], i)) >= 0:
        content.append(text[i:start])
        try:
            obj, end = _json_at(text, start + len(_MARKERS["hermes"]))
        except ValueError:
            return None
        call = _call(obj, "arguments")
        if call is None:
            return None
        calls.append(call)
        rest = text[end:]
        stripped = rest.lstrip()
        if stripped.startswith(_HERMES_CLOSE):
            i = end + len(rest) - len(stripped) + len(_HERMES_CLOSE)
        elif not stripped:
            i = len(text)  # the answer ended before the closing tag
        else:
            return None
    content.append(text[i:])
    return "".join(content), calls


def _parse_llama3(text: str) -> tuple[str, list[dict]] | None:
    i = len(text) - len(text.lstrip())
    if text.startswith(_LLAMA_TAG, i):
        i += len(_LLAMA_TAG)
    calls = []
    while True:
        try:
            obj, end = _json_at(text, i)
        except ValueError:
            break
        call = _call(obj, "parameters" if isinstance(obj, dict) and "parameters" in obj else "arguments")
        if call is None or (obj.get("type", "function") != "function"):
            return None
        calls.append(call)
        i = end
        m = re.match(r"\s*;", text[i:])
        if m:
            i += m.end()
    if not calls:
        return None
    return text[i:], calls


def _parse_mistral(text: str) -> tuple[str, list[dict]] | None:
    start = text.find(_MARKERS["mistral"])
    if start < 0:
        return None
    try:
        objs, end = _json_at(text, start + len(_MARKERS["mistral"]))
    except ValueError:
        return None
    if isinstance(objs, dict):
        objs = [objs]
    if not isinstance(objs, list) or not objs:
        return None
    calls = [_call(obj, "arguments") for obj in objs]
    if any(c is None for c in calls):
        return None
    return text[:start] + text[end:], calls


_PARSERS = {"hermes": _parse_hermes, "llama3": _parse_llama3, "mistral": _parse_mistral}


def split_calls(fmt: str | None, text: str) -> tuple[str, list[dict]] | None:
    """(the content outside the calls, as written; [{name, arguments[, id]}]) when `text` holds calls
    in format `fmt` that all parse, else None (the answer is plain content)."""
    if fmt is None:
        return None
    if fmt not in _PARSERS:
        raise ValueError(f"unknown tool-call format {fmt!r}: one of {FORMATS}")
    parsed = _PARSERS[fmt](text)
    return parsed if parsed is not None and parsed[1] else None


def call_id(fmt: str | None, model_id: str | None = None) -> str:
    """An id for a parsed call: Mistral's templates want 9 letters or digits (the model's own when it
    wrote one), the rest OpenAI's call_ + 24 hex digits."""
    if fmt == "mistral":
        if isinstance(model_id, str) and re.fullmatch(r"[A-Za-z0-9]{9}", model_id):
            return model_id
        return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(9))
    return f"call_{secrets.token_hex(12)}"


def openai_tool_calls(fmt: str | None, calls: list[dict]) -> list[dict]:
    """Parsed calls as OpenAI's message.tool_calls."""
    return [{"id": call_id(fmt, c.get("id")), "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}} for c in calls]


def parse_tool_calls(fmt: str | None, text: str) -> tuple[str | None, list[dict]]:
    """OpenAI's (content, tool_calls) for a whole answer: content is the text outside the calls,
    stripped (None when nothing is left); tool_calls is [] when the answer holds none that parse."""
    parsed = split_calls(fmt, text)
    if parsed is None:
        return text, []
    content = parsed[0].strip()
    return content or None, openai_tool_calls(fmt, parsed[1])


class ToolCallStream:
    """Streamed text with the part where a call may begin held back: push(piece) gives the text to
    send now; finish() gives (the held text that is content, the calls) once the answer is whole."""

    def __init__(self, fmt: str | None):
        self.fmt, self.text, self.sent = fmt, "", 0
        self.released = fmt != "llama3"  # llama3: a call can only start the answer

    def _hold_from(self) -> int:
        """Where the held part of self.text starts (len(text): nothing held)."""
        if self.fmt is None:
            return len(self.text)
        if self.fmt == "llama3":
            if self.released:
                return len(self.text)
            head = self.text.lstrip()
            if not head or head.startswith("{") or head.startswith(_LLAMA_TAG) or _LLAMA_TAG.startswith(head):
                return 0
            self.released = True
            return len(self.text)
        marker = _MARKERS[self.fmt]
        at = self.text.find(marker, self.sent)
        if at >= 0:
            return at
        for k in range(min(len(marker) - 1, len(self.text) - self.sent), 0, -1):  # a marker's beginning at the end
            if self.text.endswith(marker[:k]):
                return len(self.text) - k
        return len(self.text)

    def push(self, piece: str) -> str:
        self.text += piece
        hold = max(self._hold_from(), self.sent)
        out, self.sent = self.text[self.sent : hold], hold
        return out

    def finish(self) -> tuple[str, list[dict]]:
        """The rest of the content (as written) and the calls, parsed from the held text."""
        held = self.text[self.sent :]
        self.sent = len(self.text)
        parsed = split_calls(self.fmt, held)
        if parsed is None:
            return held, []
        return parsed[0], openai_tool_calls(self.fmt, parsed[1])
