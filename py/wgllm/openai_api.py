"""OpenAI's HTTP API over one LlmInference on the GPU engine, served by serve-models (server.py).

    GET  /v1/models, /v1/models/{id}     the one model, its id the file's name
    GET  /health                          {"status": "ok", "model", "running": 0 | 1, "queued", "queue_size"}
    POST /v1/chat/completions            messages through the model's chat template (wgllm.chat)
    POST /v1/completions                 a prompt as written (text, or token ids)

Responses, stream chunks (`stream: true`: server-sent events `data: {chunk}`, then `data: [DONE]`)
and errors are OpenAI's objects. Options map onto LlmInference.generate: max_tokens /
max_completion_tokens -> max_new_tokens (absent: up to the context in chat, 16 in completions, as
OpenAI's), seed -> random_seed (absent: a fresh random seed per request, so that answers vary as
OpenAI's do), n, stop, response_format, temperature (default 1.0, as OpenAI), top_p,
frequency_penalty, presence_penalty, logit_bias, logprobs / top_logprobs (chat) or an integer
logprobs (completions' legacy shape; text_offset counts from the prompt's start), and llama.cpp's
extensions top_k (default 64, the GPU sampler's largest: OpenAI has no top-k, so the widest
allowed), min_p and repetition_penalty. n answers are drawn one after another with seed + i, as
LlmInference.generate(n=...) does, and n x max_tokens plus the prompt must fit the context;
greedy decoding with n > 1 gives n equal answers, as OpenAI's does. Unknown fields are refused
(400, naming the field); user, metadata, store, service_tier and parallel_tool_calls are accepted
and ignored. In a stream, an answer's logprobs come in its last chunk (the one with finish_reason).

Tools (openai_messages.py checks them): `tools` reach the chat template, and so do the assistant's
earlier tool_calls and the tools' answers (role "tool") in `messages`. tool_choice "required" (any
one tool) or a named function forces one call: the answer is constrained (as response_format
json_schema) to {"name": ..., "arguments": <the function's parameters schema>} and returned as
message.tool_calls with finish_reason "tool_calls". "auto" (the default) lets the model answer
freely; calls it writes in its template's format (wgllm.tool_calls: Hermes/Qwen <tool_call> tags,
Llama 3.1's bare JSON, Mistral's [TOOL_CALLS]; a template with none of them is never parsed) come
back as tool_calls with ids call_..., content the text outside them (null when none is left),
finish_reason "tool_calls"; a call that does not parse leaves the whole answer as plain content.
In a stream, text from where a call may begin is held back; once the answer is whole, each call is
one tool_calls delta carrying index, id, type, name and all its arguments at once (OpenAI splits
the arguments over several deltas; clients join them either way). "none" renders the template
without the tools.

Everything is checked before the request joins the queue (the options by LlmInference.check,
generate's own checks): a bad request gets 4xx at once, never a 500 and never after waiting. The engine runs one generation at a time on one worker thread;
requests wait in a FIFO queue of --queue places (429 when it is full). A client that disconnects
frees its place (queued) or stops its generation (running) at the next token.
"""

from __future__ import annotations

import asyncio
import codecs
import collections
import json
import re
import secrets
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wgllm.chat import ChatTemplateError, render_chat, special_strings, strip_special
from wgllm.generation import PromptTooLongError
from wgllm.grammar import SchemaError
from wgllm.openai_messages import ApiError, bad, check_messages, check_tools
from wgllm.sampling import MAX_TOP_K, MAX_TOP_LOGPROBS
from wgllm.tool_calls import ToolCallStream, detect_format, openai_tool_calls, parse_tool_calls

DEFAULT_TEMPERATURE = 1.0  # OpenAI's
DEFAULT_TOP_K = MAX_TOP_K  # OpenAI samples from the whole vocabulary; the GPU sampler's widest is 64
DEFAULT_CONTEXT = 2048
DEFAULT_QUEUE = 8
MAX_N = 16  # LlmInference's
COMMON_FIELDS = {"model", "max_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty", "frequency_penalty",
                 "presence_penalty", "logit_bias", "seed", "stop", "n", "stream", "stream_options", "response_format", "logprobs", "user"}
CHAT_FIELDS = COMMON_FIELDS | {"messages", "max_completion_tokens", "top_logprobs", "tools", "tool_choice", "parallel_tool_calls",
                               "metadata", "store", "service_tier"}
COMPLETION_FIELDS = COMMON_FIELDS | {"prompt", "echo", "best_of", "suffix"}
SAMPLING_FIELDS = ("top_k", "temperature", "top_p", "min_p", "repetition_penalty", "frequency_penalty", "presence_penalty", "logit_bias")


# the options' names in LlmInference's messages, as the request spells them
_PARAM_NAMES = {"random_seed": "seed", "max_new_tokens": "max_tokens"}


def param_of(error: Exception, default: str | None) -> str | None:
    """The request field an error from wgllm's checks names (they start with the field's name)."""
    if isinstance(error, SchemaError):
        return "response_format"
    m = re.match(r"([a-z_]+)\b", str(error))
    name = m.group(1) if m else None
    name = _PARAM_NAMES.get(name, name)
    return name if name in CHAT_FIELDS | COMPLETION_FIELDS else default


# -- the request, checked ------------------------------------------------------------------------
@dataclass
class Plan:
    """One request, checked, as the worker runs it."""

    kind: str  # "chat" or "completion"
    ids: list[int]
    prompt_chars: int  # the prompt's length in characters: completions' text_offset starts there
    n: int
    max_new_tokens: int | None
    seed: int
    stop: list[str]
    response_format: dict | None
    sampling: dict  # SamplingParams fields for generate
    stream: bool
    include_usage: bool
    logprobs: bool
    top_logprobs: int
    tool_call: bool = False  # the answer is a forced tool call, returned as message.tool_calls
    tool_format: str | None = None  # tool_choice "auto": the format calls are parsed from (wgllm.tool_calls)
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))


def _int(body: dict, name: str, default, lo: int | None = None, hi: int | None = None):
    v = body.get(name)
    if v is None:
        return default
    if not isinstance(v, int) or isinstance(v, bool) or (lo is not None and v < lo) or (hi is not None and v > hi):
        where = f" in [{lo}, {hi}]" if hi is not None else f" >= {lo}" if lo is not None else ""
        raise bad(f"{name} must be an integer{where}, got {json.dumps(v)}", name)
    return v


def _bool(body: dict, name: str, default: bool = False) -> bool:
    v = body.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise bad(f"{name} must be true or false, got {json.dumps(v)}", name)
    return v


class OpenAIApi:
    """The routes and the worker for one model."""

    def __init__(self, llm, name: str, queue_size: int = DEFAULT_QUEUE, created: int | None = None):
        self.llm, self.name = llm, name
        self.created = created if created is not None else int(time.time())
        template = llm.model.gguf.get("tokenizer.chat_template")
        self.chat_template = template if isinstance(template, str) and template else None
        self.bos_token, self.eos_token = special_strings(llm.model.tokenizer)
        self.tool_format = detect_format(self.chat_template)
        self.worker = Worker(llm, queue_size)

    @classmethod
    def load(cls, path: str | Path, *, context: int | None = None, queue_size: int = DEFAULT_QUEUE, **options) -> "OpenAIApi":
        """The GPU engine for the model at `path` with a context of `context` tokens (default: the
        model's training context, at most DEFAULT_CONTEXT); `options`: more LlmInference options."""
        from wgllm.inference import LlmInference
        from wgllm.model import load_model

        if context is None:
            model = load_model(path)
            context = min(DEFAULT_CONTEXT, model.config.n_ctx_train)
            model.gguf.close()
        llm = LlmInference.create_from_options(str(path), backend="gpu", max_tokens=context, top_k=DEFAULT_TOP_K,
                                               temperature=DEFAULT_TEMPERATURE, **options)
        return cls(llm, Path(path).name, queue_size, int(Path(path).stat().st_mtime))

    @property
    def context(self) -> int:
        return self.llm.max_tokens

    def close(self) -> None:
        self.worker.close()
        self.llm.close()

    # -- checking a request ----------------------------------------------------------------------
    def plan(self, body: Any, kind: str) -> Plan:
        """The request checked, field by field, before it may join the queue (raises ApiError)."""
        if not isinstance(body, dict):
            raise bad(f"the request body must be a JSON object, got {type(body).__name__}")
        model = body.get("model")
        if not isinstance(model, str):
            raise bad("model is required: a string (GET /v1/models lists the one this server has)", "model")
        if model != self.name:
            raise ApiError(404, f"The model `{model}` does not exist: this server serves `{self.name}`", "model", "model_not_found")
        known = CHAT_FIELDS if kind == "chat" else COMPLETION_FIELDS
        for name in body:
            if name not in known:
                raise bad(f"Unrecognized request argument supplied: {name}", name, "unknown_parameter")

        if kind == "chat":
            messages = check_messages(body)
            if self.chat_template is None:
                raise bad(f"the model {self.name} has no chat template (GGUF tokenizer.chat_template): "
                          "use /v1/completions with a prompt written in its format", "messages", "no_chat_template")
            tools, tool_schema = check_tools(body)
            try:
                text = render_chat(self.chat_template, messages, tools=tools, bos_token=self.bos_token, eos_token=self.eos_token)
            except ChatTemplateError as e:
                raise bad(str(e), "messages") from None
            prompt: str | list[int] = strip_special(text, self.llm.model.tokenizer)
            prompt_param = "messages"
            max_new = _int(body, "max_completion_tokens", None, 1)
            max_new = _int(body, "max_tokens", None, 1) if max_new is None else max_new
            logprobs = _bool(body, "logprobs")
            top_logprobs = _int(body, "top_logprobs", 0, 0, MAX_TOP_LOGPROBS)
            if top_logprobs and not logprobs:
                raise bad("top_logprobs needs logprobs: true", "top_logprobs")
        else:
            prompt, prompt_param, tools, tool_schema = self._prompt(body.get("prompt")), "prompt", None, None
            max_new = _int(body, "max_tokens", 16, 1)  # OpenAI's default for completions
            k = _int(body, "logprobs", None, 0, MAX_TOP_LOGPROBS)
            logprobs, top_logprobs = k is not None, k or 0
            if _bool(body, "echo"):
                raise bad("echo is not supported", "echo")
            if body.get("suffix") is not None:
                raise bad("suffix is not supported: this model has no fill-in-the-middle mode here", "suffix")
        n = _int(body, "n", 1, 1, MAX_N)
        if kind == "completion" and _int(body, "best_of", n, 1, MAX_N) != n:
            raise bad("best_of must equal n: answers are not ranked here", "best_of")
        stream = _bool(body, "stream")
        options = body.get("stream_options")
        include_usage = False
        if options is not None:
            if not stream:
                raise bad("stream_options is only allowed when stream is true", "stream_options")
            if not isinstance(options, dict) or set(options) - {"include_usage"}:
                raise bad('stream_options must be {"include_usage": bool}', "stream_options")
            include_usage = _bool(options, "include_usage")
        seed = _int(body, "seed", None)
        seed = secrets.randbits(31) if seed is None else seed
        sampling = {name: body[name] for name in SAMPLING_FIELDS if body.get(name) is not None}
        sampling.update(logprobs=logprobs, top_logprobs=top_logprobs)
        response_format = body.get("response_format")
        if response_format is not None and not isinstance(response_format, dict):
            raise bad('response_format must be an object: {"type": "text" | "json_object" | "json_schema", ...}', "response_format")
        tool_call = kind == "chat" and tool_schema is not None
        if tool_call:  # a forced call: the answer is {"name", "arguments"} as the tool's schema says
            if response_format is not None and response_format.get("type") != "text":
                raise bad("response_format cannot be combined with a tool_choice that forces a call", "response_format")
            response_format = {"type": "json_schema", "json_schema": {"name": "tool_call", "schema": tool_schema, "strict": True}}
        if isinstance(sampling.get("top_k"), int) and sampling["top_k"] > MAX_TOP_K:
            raise bad(f"top_k must be at most {MAX_TOP_K}, the GPU sampler's candidate list, got {sampling['top_k']}", "top_k")
        max_field = "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        try:  # generate's own checks (the prompt tokenized as it tokenizes it), run now rather than in the queue
            call = self.llm.check(prompt, n=n, max_new_tokens=max_new, stop=body.get("stop"), response_format=response_format,
                                  random_seed=seed, **sampling)
        except PromptTooLongError as e:
            if " x max_tokens " in str(e):
                raise bad(str(e), max_field, "context_length_exceeded") from None
            tok = self.llm.model.tokenizer  # the tokens the run holds: the start token too (size_in_tokens leaves it out)
            size = len(tok.encode(prompt, add_special=True, parse_special=True)) if isinstance(prompt, str) else len(prompt)
            raise bad(f"the prompt has {size} tokens: the context holds {self.context}, prompt and answer together",
                      prompt_param, "context_length_exceeded") from None
        except (ValueError, TypeError) as e:
            raise bad(str(e), param_of(e, prompt_param)) from None
        ids, stop = call.ids, call.stops
        prefix = "chatcmpl-" if kind == "chat" else "cmpl-"
        prompt_chars = len(prompt) if isinstance(prompt, str) else len(self.llm.model.tokenizer.decode(ids))
        tool_format = self.tool_format if tools is not None and not tool_call else None
        return Plan(kind, ids, prompt_chars, n, max_new, seed, stop, response_format, sampling, stream, include_usage,
                    logprobs, top_logprobs, tool_call, tool_format, id=prefix + secrets.token_hex(12))

    def _prompt(self, prompt) -> str | list[int]:
        """A completion's prompt: a string, token ids, or a list of one of either."""
        if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
            prompt = prompt[0]
        if isinstance(prompt, str):
            return prompt
        n_vocab = self.llm.model.config.n_vocab
        if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
            if not all(0 <= t < n_vocab for t in prompt):
                raise bad(f"prompt: token ids must be in [0, {n_vocab})", "prompt")
            return prompt
        raise bad("prompt must be a string or a list of token ids (one prompt per request)", "prompt")

    # -- answers ----------------------------------------------------------------------------------
    def usage(self, plan: Plan, gens: list) -> dict:
        completion = sum(len(g.tokens) for g in gens)
        return {"prompt_tokens": len(plan.ids), "completion_tokens": completion, "total_tokens": len(plan.ids) + completion}

    def logprobs(self, plan: Plan, g) -> dict | None:
        """An answer's logprobs in OpenAI's shape: chat's content list, or completions' legacy lists."""
        if not plan.logprobs:
            return None
        tok = self.llm.model.tokenizer
        kept, text_bytes, start = [], len(g.text.encode("utf-8")), 0
        for token, s in zip(g.tokens, g.sampled):
            if g.stop is not None and start >= text_bytes:
                break  # tokens of the stop string, cut from the text
            kept.append((token, s))
            start += len(tok.token_bytes(token))

        def piece(i: int) -> tuple[str, bytes]:
            b = tok.token_bytes(i)
            return b.decode("utf-8", errors="replace"), b

        if plan.kind == "chat":
            content = []
            for token, s in kept:
                text, b = piece(token)
                top = [{"token": piece(i)[0], "logprob": lp, "bytes": list(piece(i)[1])} for i, lp in (s.top or [])[: plan.top_logprobs]]
                content.append({"token": text, "logprob": s.logprob, "bytes": list(b), "top_logprobs": top})
            return {"content": content, "refusal": None}
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        out: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
        offset = plan.prompt_chars
        for token, s in kept:
            text, b = piece(token)
            out["tokens"].append(text)
            out["token_logprobs"].append(s.logprob)
            out["top_logprobs"].append({piece(i)[0]: lp for i, lp in (s.top or [])[: plan.top_logprobs]})
            out["text_offset"].append(offset)
            offset += len(decoder.decode(b))
        return out

    def tool_calls(self, plan: Plan, g) -> list | None:
        """A forced call's answer as OpenAI's tool_calls (None when max_tokens cut the JSON short)."""
        if not plan.tool_call:
            return None
        try:
            call = json.loads(g.text)
        except ValueError:
            return None
        return openai_tool_calls(None, [{"name": call["name"], "arguments": json.dumps(call["arguments"], ensure_ascii=False, separators=(",", ":"))}])

    def choice(self, plan: Plan, i: int, g) -> dict:
        if plan.kind == "chat":
            content, calls = (None, self.tool_calls(plan, g)) if plan.tool_call else parse_tool_calls(plan.tool_format, g.text)
            if calls:
                return {"index": i, "message": {"role": "assistant", "content": content, "tool_calls": calls, "refusal": None},
                        "logprobs": self.logprobs(plan, g), "finish_reason": "tool_calls"}
            return {"index": i, "message": {"role": "assistant", "content": g.text, "refusal": None},
                    "logprobs": self.logprobs(plan, g), "finish_reason": g.finish_reason}
        return {"index": i, "text": g.text, "logprobs": self.logprobs(plan, g), "finish_reason": g.finish_reason}

    def envelope(self, plan: Plan, chunk: bool) -> dict:
        kind = {("chat", False): "chat.completion", ("chat", True): "chat.completion.chunk"}.get((plan.kind, chunk), "text_completion")
        return {"id": plan.id, "object": kind, "created": plan.created, "model": self.name, "system_fingerprint": None}

    def answer(self, plan: Plan, gens: list) -> dict:
        return {**self.envelope(plan, False), "choices": [self.choice(plan, i, g) for i, g in enumerate(gens)], "usage": self.usage(plan, gens)}

    def chunk(self, plan: Plan, choice: dict) -> bytes:
        body = {**self.envelope(plan, True), "choices": [choice]}
        if plan.include_usage:
            body["usage"] = None
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    # -- routes ------------------------------------------------------------------------------------
    def routes(self) -> list[Route]:
        async def models(request: Request) -> Response:
            return JSONResponse({"object": "list", "data": [self.model_object()]})

        async def model(request: Request) -> Response:
            if request.path_params["id"] != self.name:
                return ApiError(404, f"The model `{request.path_params['id']}` does not exist", "model", "model_not_found").response()
            return JSONResponse(self.model_object())

        async def health(request: Request) -> Response:  # llama.cpp's server has one too: for load balancers and tests
            running, queued = self.worker.state()
            return JSONResponse({"status": "ok", "model": self.name, "running": running, "queued": queued, "queue_size": self.worker.queue_size})

        def endpoint(kind: str):
            async def handle(request: Request) -> Response:
                try:
                    body = json.loads(await request.body())
                except (ValueError, UnicodeDecodeError) as e:
                    return bad(f"We could not parse the JSON body of your request ({e}): expected a JSON object").response()
                try:
                    plan = await anyio.to_thread.run_sync(self.plan, body, kind)
                except ApiError as e:
                    return e.response()
                job = Job(plan, asyncio.get_running_loop())
                if not self.worker.submit(job):
                    return ApiError(429, f"the server is busy: {self.worker.queue_size} requests are already waiting for the model; retry later",
                                    None, "rate_limit_exceeded", "requests").response({"retry-after": "1"})
                return GenerationResponse(self, job)

            return handle

        return [
            Route("/health", health, methods=["GET"]),
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/models/{id:path}", model, methods=["GET"]),
            Route("/v1/chat/completions", endpoint("chat"), methods=["POST"]),
            Route("/v1/completions", endpoint("completion"), methods=["POST"]),
        ]

    def model_object(self) -> dict:
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "wgllm", "context_length": self.context}


# -- the queue and the worker thread ------------------------------------------------------------------
class Job:
    """One request between the event loop and the worker: events go to the loop's queue."""

    def __init__(self, plan: Plan, loop: asyncio.AbstractEventLoop):
        self.plan, self.loop = plan, loop
        self.events: asyncio.Queue = asyncio.Queue()
        self.cancelled = threading.Event()

    def post(self, *event) -> None:
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, event)
        except RuntimeError:  # the loop is closed (the server stopped): nobody is waiting for it
            self.cancelled.set()


class Worker:
    """Runs the jobs one at a time, first come first served, on one thread (the engine is not thread-safe)."""

    def __init__(self, llm, queue_size: int):
        self.llm, self.queue_size = llm, queue_size
        self._jobs: collections.deque[Job] = collections.deque()
        self._running: Job | None = None
        self._ready = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="wgllm-openai-api", daemon=True)
        self._thread.start()

    def submit(self, job: Job) -> bool:
        """Queue `job`; False when queue_size jobs wait already behind a running one."""
        with self._ready:
            if len(self._jobs) + (self._running is not None) > self.queue_size:
                return False
            self._jobs.append(job)
            self._ready.notify()
            return True

    def state(self) -> tuple[int, int]:
        """(jobs running: 0 or 1, jobs waiting in the queue)."""
        with self._ready:
            return int(self._running is not None), len(self._jobs)

    def cancel(self, job: Job) -> None:
        """Stop `job`: a queued one leaves the queue now, a running one ends at its next token."""
        job.cancelled.set()
        with self._ready:
            if job in self._jobs:
                self._jobs.remove(job)

    def close(self) -> None:
        with self._ready:
            self._closed = True
            for job in [*self._jobs, *([self._running] if self._running is not None else [])]:
                job.cancelled.set()
            self._jobs.clear()
            self._ready.notify()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._jobs and not self._closed:
                    self._ready.wait()
                if self._closed:
                    return
                job = self._running = self._jobs.popleft()
            try:
                self._generate(job)
            finally:
                with self._ready:
                    self._running = None

    def _generate(self, job: Job) -> None:
        plan, started, done = job.plan, time.monotonic(), []
        try:
            for i in range(plan.n):
                if job.cancelled.is_set():
                    break
                [g] = self.llm.generate(plan.ids, n=1, max_new_tokens=plan.max_new_tokens, stop=plan.stop, response_format=plan.response_format,
                                        random_seed=plan.seed + i, stream=lambda _, text, i=i: job.post("piece", i, text),
                                        cancelled=job.cancelled.is_set, **plan.sampling)
                done.append(g)
                job.post("done", i, g)
        except (ValueError, TypeError) as e:  # the checks in generate, which plan() ran already
            job.post("error", bad(str(e), param_of(e, None)))
        except Exception as e:  # noqa: BLE001  (the engine failed: the client learns why, the server goes on)
            traceback.print_exc()
            job.post("error", ApiError(500, f"generation failed: {type(e).__name__}: {e}", None, None, "server_error"))
        finally:
            job.post("end")
        tokens = sum(len(g.tokens) for g in done)
        reasons = ", ".join(g.finish_reason for g in done) or "cancelled"
        print(f"serve-models: {plan.id}: {len(plan.ids)} prompt tokens, {tokens} generated ({reasons}), {time.monotonic() - started:.2f} s",
              file=sys.stderr, flush=True)


# -- the response -------------------------------------------------------------------------------------
class GenerationResponse(Response):
    """The answer of a queued job: one JSON object, or server-sent events as the worker produces them.
    A disconnect seen at any time (queued, running, streaming) cancels the job."""

    def __init__(self, api: OpenAIApi, job: Job):
        self.api, self.job = api, job
        super().__init__()

    async def __call__(self, scope, receive, send) -> None:
        async with anyio.create_task_group() as tg:

            async def cancel_on_disconnect() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                self.api.worker.cancel(self.job)
                tg.cancel_scope.cancel()

            tg.start_soon(cancel_on_disconnect)
            try:
                await (self.stream(send) if self.job.plan.stream else self.whole(send))
            finally:
                self.api.worker.cancel(self.job)  # done already, or the response failed: never generate for nobody
                tg.cancel_scope.cancel()

    async def send_json(self, send, status: int, body: dict, headers: list | None = None) -> None:
        data = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *(headers or [])]})
        await send({"type": "http.response.body", "body": data})

    async def whole(self, send) -> None:
        gens: dict[int, Any] = {}
        while True:
            event = await self.job.events.get()
            if event[0] == "error":
                return await self.send_json(send, event[1].status, event[1].body())
            if event[0] == "done":
                gens[event[1]] = event[2]
            elif event[0] == "end":
                break
        plan = self.job.plan
        await self.send_json(send, 200, self.api.answer(plan, [gens[i] for i in range(plan.n)]))

    async def stream(self, send) -> None:
        api, plan = self.api, self.job.plan
        event = await self.job.events.get()
        if event[0] == "error":  # nothing sent yet: a proper error response
            return await self.send_json(send, event[1].status, event[1].body())
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]})
        chat, begun, gens = plan.kind == "chat", set(), []
        held = {i: ToolCallStream(plan.tool_format) for i in range(plan.n)} if plan.tool_format else {}

        async def emit(data: bytes) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": True})

        async def begin(i: int) -> None:
            if chat and i not in begun:
                begun.add(i)
                await emit(api.chunk(plan, {"index": i, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}))

        while event[0] != "end":
            kind = event[0]
            if kind == "piece":
                _, i, text = event
                await begin(i)
                text = held[i].push(text) if held else text  # text where a call may begin waits for the answer's end
                if not plan.tool_call and text:  # a forced call's JSON comes whole, as tool_calls, when it is done
                    delta = {"delta": {"content": text}} if chat else {"text": text}
                    await emit(api.chunk(plan, {"index": i, **delta, "logprobs": None, "finish_reason": None}))
            elif kind == "done":
                _, i, g = event
                gens.append(g)
                await begin(i)
                finish = g.finish_reason
                if plan.tool_call:
                    calls = api.tool_calls(plan, g)
                    delta = {"tool_calls": [{"index": 0, **calls[0]}]} if calls is not None else {"content": g.text}
                    await emit(api.chunk(plan, {"index": i, "delta": delta, "logprobs": None, "finish_reason": None}))
                    finish = "tool_calls" if calls is not None else finish
                elif held:
                    rest, calls = held[i].finish()
                    if rest and (rest.strip() or not calls):
                        await emit(api.chunk(plan, {"index": i, "delta": {"content": rest}, "logprobs": None, "finish_reason": None}))
                    for k, call in enumerate(calls):
                        await emit(api.chunk(plan, {"index": i, "delta": {"tool_calls": [{"index": k, **call}]}, "logprobs": None, "finish_reason": None}))
                    finish = "tool_calls" if calls else finish
                last = {"delta": {}} if chat else {"text": ""}
                await emit(api.chunk(plan, {"index": i, **last, "logprobs": api.logprobs(plan, g), "finish_reason": finish}))
            elif kind == "error":  # after the headers: the error object as an event, as OpenAI's streams do
                await emit(b"data: " + json.dumps(event[1].body()).encode() + b"\n\n")
            event = await self.job.events.get()
        if plan.include_usage and len(gens) == plan.n:
            await emit(b"data: " + json.dumps({**api.envelope(plan, True), "choices": [], "usage": api.usage(plan, gens)}).encode() + b"\n\n")
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
