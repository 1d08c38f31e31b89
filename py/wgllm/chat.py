"""Chat messages to a prompt with the model's own template (GGUF `tokenizer.chat_template`).

Rendered as transformers renders chat templates (`apply_chat_template`): jinja2's
ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks, the loopcontrols extension,
`raise_exception(message)`, a `tojson` filter that keeps non-ASCII characters, `strftime_now(format)`,
and the variables messages, tools, add_generation_prompt, bos_token and eos_token. The
`{% generation %}` block transformers uses to mark the assistant's text renders its body.

`strip_special(text, tokenizer)`: a template that writes `{{ bos_token }}` itself would give a
double BOS when the tokenizer adds one too; as llama.cpp's server (common/chat.cpp), the rendered
text loses a leading BOS string when the tokenizer adds BOS, and a trailing EOS string when it adds EOS.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment


class ChatTemplateError(ValueError):
    """The template does not parse, or refuses these messages (raise_exception, an error while rendering)."""


class _GenerationBlock(jinja2.ext.Extension):
    """transformers' `{% generation %}...{% endgeneration %}` (it marks the assistant's tokens): the body as is."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(lineno)

    def _body(self, caller):
        return caller()


def _raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format):
    return datetime.now().strftime(format)


@lru_cache(maxsize=8)
def _compile(template: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationBlock, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    try:
        return env.from_string(template)
    except jinja2.exceptions.TemplateError as e:
        raise ChatTemplateError(f"the chat template does not parse: {e}") from None


def render_chat(template: str, messages: list[dict], *, tools: list[dict] | None = None, add_generation_prompt: bool = True,
                bos_token: str = "", eos_token: str = "") -> str:
    """`messages` ([{role, content, ...}]) rendered with `template`, a Hugging Face chat template."""
    compiled = _compile(template)
    try:
        return compiled.render(messages=messages, tools=tools, add_generation_prompt=add_generation_prompt, bos_token=bos_token, eos_token=eos_token)
    except jinja2.exceptions.TemplateError as e:
        raise ChatTemplateError(f"the chat template refused the messages: {e}") from None
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as e:  # a template meeting a field shape it did not expect
        raise ChatTemplateError(f"the chat template failed on these messages: {type(e).__name__}: {e}") from None


def special_strings(tokenizer) -> tuple[str, str]:
    """The BOS and EOS tokens' text, as the template's bos_token and eos_token ("" when the model has none)."""
    def text(i):
        return tokenizer.tokens[i] if i is not None and 0 <= i < len(tokenizer.tokens) else ""

    return text(tokenizer.bos_id), text(tokenizer.eos_id)


def strip_special(text: str, tokenizer) -> str:
    """`text` without the leading BOS / trailing EOS string the tokenizer will add itself (llama.cpp's rule)."""
    bos, eos = special_strings(tokenizer)
    if tokenizer.add_bos and bos and text.startswith(bos):
        text = text[len(bos):]
    if getattr(tokenizer, "add_eos", False) and eos and text.endswith(eos):
        text = text[: -len(eos)]
    return text
