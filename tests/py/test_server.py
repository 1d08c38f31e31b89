"""serve-models, run as a real uvicorn subprocess on a free loopback port and spoken to over HTTP.

Model and adapter files are written here with gguf.GGUFWriter (random float32 factors); what the
server lists is checked against what was written, what it serves against the bytes on disk.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote, urljoin

import numpy as np
import pytest
from gguf import GGUFWriter

from wgllm.errors import ModelFormatError
from wgllm.gguf_io import GGUFFile
from wgllm.server import WEB_DIR, main, parse_range, read_lora_info

ISOLATION = {"cross-origin-opener-policy": "same-origin", "cross-origin-embedder-policy": "require-corp", "cross-origin-resource-policy": "same-origin"}
SECRET = b"TOP-SECRET-" + secrets.token_hex(8).encode()


# -- files ---------------------------------------------------------------------------------------
def write_model(path: Path, rows: int = 64, seed: int = 0, name: str = "tiny") -> Path:
    w = GGUFWriter(path, "llama")
    w.add_name(name)
    w.add_tensor("token_embd.weight", np.random.default_rng(seed).standard_normal((rows, 64)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_adapter(path: Path, rank: int, seed: int = 0, alpha: float = 8.0, base: str | None = "tiny", n: int = 32, pair: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    w = GGUFWriter(path, "llama")
    w.add_string("general.type", "adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", alpha)
    if base is not None:
        w.add_uint32("general.base_model.count", 1)
        w.add_string("general.base_model.0.name", base)
    for proj in ("attn_q", "attn_v"):
        w.add_tensor(f"blk.0.{proj}.weight.lora_a", rng.standard_normal((rank, n)).astype(np.float32))
        if pair:
            w.add_tensor(f"blk.0.{proj}.weight.lora_b", rng.standard_normal((n, rank)).astype(np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def write_sparse_model(path: Path, n_bytes: int) -> Path:
    """A valid GGUF whose one tensor of `n_bytes` is a hole in the file (no disk, no memory)."""
    w = GGUFWriter(path, "llama")
    w.add_tensor_info("token_embd.weight", (n_bytes // 4096, 1024), np.dtype(np.float32), n_bytes)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    data_start = -(-path.stat().st_size // 32) * 32
    os.truncate(path, data_start + n_bytes)
    return path


def write_web(web: Path, dist: bool = True) -> Path:
    (web / "demo").mkdir(parents=True)
    (web / "demo" / "index.html").write_text("<!doctype html><title>demo</title><script type=module src=app.js></script>")
    (web / "demo" / "app.js").write_text('import { LlmInference } from "./dist/genai_bundle.mjs";\n')
    if dist:
        (web / "dist").mkdir()
        (web / "dist" / "genai_bundle.mjs").write_text("export class LlmInference {}\n" * 50)
    return web


# -- the server ----------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, *args: str | Path, log: Path, host: str = "127.0.0.1"):
        self.port, self.log = free_port(), log
        self.out = open(log, "w")
        cmd = [sys.executable, "-m", "wgllm.server", "--host", host, "--port", str(self.port), *map(str, args)]
        self.proc = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT)

    def wait_ready(self) -> "Server":
        for _ in range(600):
            if self.proc.poll() is not None:
                raise AssertionError(f"serve-models exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if self.get("/api/models")[0] == 200:
                    return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"serve-models did not answer:\n{self.log.read_text()}")

    def request(self, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def get(self, path: str, **headers):
        return self.request("GET", path, {k.replace("_", "-"): v for k, v in headers.items()})

    def json(self, path: str):
        status, headers, body = self.get(path)
        assert status == 200 and headers["content-type"] == "application/json", (status, headers)
        return json.loads(body)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """root/{secret.txt, outside.gguf, site/{models,loras,secret.txt}, web/{demo,dist,secret.txt}}."""
    root = tmp_path_factory.mktemp("serve")
    for folder in (root, root / "site", root / "web"):
        folder.mkdir(exist_ok=True)
        (folder / "secret.txt").write_bytes(SECRET)
    models, loras, web = root / "site" / "models", root / "site" / "loras", write_web(root / "web")
    models.mkdir()
    loras.mkdir()
    write_model(models / "tiny.gguf")
    write_model(root / "outside.gguf", name=SECRET.decode())
    write_adapter(root / "outside-lora.gguf", 2, base=SECRET.decode())
    (models / "broken.gguf").write_bytes(b"GGUF" + b"\x03\x00")
    shutil.copy(models / "tiny.gguf", models / "copying.gguf.part")
    shutil.copy(models / "tiny.gguf", models / ".hidden.gguf")
    (models / "inner.gguf").symlink_to("tiny.gguf")
    (models / "escape.gguf").symlink_to(root / "outside.gguf")
    (loras / "escape.gguf").symlink_to(root / "outside-lora.gguf")
    (web / "demo" / "escape.js").symlink_to(root / "secret.txt")
    (web / "dist" / "escape.mjs").symlink_to("../secret.txt")
    server = Server("--models-dir", models, "--loras-dir", loras, "--web-dir", web, log=root / "server.log").wait_ready()
    yield {"root": root, "models": models, "loras": loras, "web": web, "server": server}
    server.stop()


# -- routes --------------------------------------------------------------------------------------
def test_every_route(site):
    s, web = site["server"], site["web"]
    pages = {"/": web / "demo" / "index.html", "/app.js": web / "demo" / "app.js", "/dist/genai_bundle.mjs": web / "dist" / "genai_bundle.mjs",
             "/models/tiny.gguf": site["models"] / "tiny.gguf", "/models/inner.gguf": site["models"] / "tiny.gguf"}
    for path, file in pages.items():
        status, headers, body = s.get(path)
        assert (status, body) == (200, file.read_bytes()), path
        assert headers["cache-control"] == "no-cache" and headers["accept-ranges"] == "bytes" and headers["etag"], path
    assert s.get("/")[1]["content-type"].startswith("text/html")
    assert s.get("/app.js")[1]["content-type"].startswith("text/javascript")
    assert s.get("/models/tiny.gguf")[1]["content-type"] == "application/octet-stream"

    listed = s.json("/api/models")  # broken, *.part, dotfile and the link leading out are left out
    assert [m["name"] for m in listed] == ["inner.gguf", "tiny.gguf"]
    size = (site["models"] / "tiny.gguf").stat().st_size
    assert listed[1] | {"modified": None} == {"name": "tiny.gguf", "url": "./models/tiny.gguf", "size": size, "architecture": "llama", "modified": None}
    assert s.json("/api/loras") == []
    status, headers, _ = s.request("HEAD", "/api/loras/events")  # headers only, no endless stream
    assert (status, headers["content-type"], headers.get("content-length")) == (200, "text/event-stream; charset=utf-8", "0")
    for path in ("/models/broken.gguf", "/models/copying.gguf.part", "/models/.hidden.gguf", "/models/nothing.gguf", "/nothing.html", "/dist/nothing.js"):
        assert s.get(path)[0] == 404, path
    # isolation headers on every kind of answer, errors included
    for method, path in [("GET", "/"), ("GET", "/api/models"), ("GET", "/models/tiny.gguf"), ("GET", "/models/nothing"), ("POST", "/api/loras")]:
        headers = s.request(method, path)[1]
        assert {k: headers.get(k) for k in ISOLATION} == ISOLATION, (method, path)
    log = site["root"].joinpath("server.log").read_text()
    assert "warning: binding" not in log  # loopback: no warning
    # each refused file is named once, however often the folder is scanned
    assert log.count(f"not listing {site['models'] / 'escape.gguf'}: it is a link to {site['root'] / 'outside.gguf'}") == 1, log
    assert log.count(f"not listing {site['models'] / 'broken.gguf'}: not a valid GGUF file") == 1, log


def test_default_web_dir_is_the_checkout():
    assert WEB_DIR == Path(__file__).resolve().parents[2] / "web" and (WEB_DIR / "package.json").is_file()


def test_byte_ranges(site):
    s, data = site["server"], (site["models"] / "tiny.gguf").read_bytes()
    n = len(data)
    cases = {"bytes=0-9": (0, 9), f"bytes={n // 2}-{n // 2 + 99}": (n // 2, n // 2 + 99), "bytes=-10": (n - 10, n - 1),
             f"bytes={n - 7}-": (n - 7, n - 1), f"bytes=5-{n * 4}": (5, n - 1), f"bytes=-{n * 2}": (0, n - 1), "bytes=0-0": (0, 0)}
    for header, (first, last) in cases.items():
        status, headers, body = s.get("/models/tiny.gguf", range=header)
        assert status == 206, header
        assert headers["content-range"] == f"bytes {first}-{last}/{n}" and body == data[first : last + 1], header
        assert int(headers["content-length"]) == last - first + 1
    for header in (f"bytes={n}-", f"bytes={n + 5}-{n + 9}", "bytes=-0", "bytes=9-3", "bytes=abc", "items=0-1", "bytes=0-1,4-5", "bytes=-", "bytes=0x1-0x2"):
        status, headers, body = s.get("/models/tiny.gguf", range=header)
        assert status == 416 and headers["content-range"] == f"bytes */{n}", header
        assert data[:64] not in body
    assert s.get("/dist/genai_bundle.mjs", range="bytes=0-5")[2] == b"export"  # the bundle and page too
    # If-Range: the range only while the file is the one the client saw
    etag = s.get("/models/tiny.gguf")[1]["etag"]
    assert s.get("/models/tiny.gguf", range="bytes=0-3", if_range=etag)[0] == 206
    assert s.get("/models/tiny.gguf", range="bytes=0-3", if_range='"other"')[:3:2] == (200, data)


def test_parse_range_edges():
    assert parse_range("bytes=0-", 1) == (0, 0) and parse_range(" bytes=2 - 3 ", 10) == (2, 3)
    for header, size in (("bytes=0-", 0), ("bytes=-1", 0), ("bytes=١-٢", 10)):  # Arabic-Indic digits are not byte offsets
        with pytest.raises(ValueError, match="0-byte|starts at byte 0|malformed"):
            parse_range(header, size)


def test_etag_revalidation_and_head(site):
    s, data = site["server"], (site["models"] / "tiny.gguf").read_bytes()
    status, headers, _ = s.get("/models/tiny.gguf")
    etag, modified = headers["etag"], headers["last-modified"]
    for inm in (etag, f"W/{etag}", f'"nope", {etag}', "*"):
        status, h304, body = s.get("/models/tiny.gguf", if_none_match=inm)
        assert (status, body, h304["etag"]) == (304, b"", etag), inm
    assert s.get("/models/tiny.gguf", if_none_match='"nope"')[::2] == (200, data)
    assert s.get("/models/tiny.gguf", if_modified_since=modified)[0] == 304
    assert s.get("/models/tiny.gguf", if_modified_since="Thu, 01 Jan 1970 00:00:00 GMT")[0] == 200
    assert s.get("/", if_none_match=s.get("/")[1]["etag"])[0] == 304
    status, headers, body = s.request("HEAD", "/models/tiny.gguf")
    assert (status, body, int(headers["content-length"]), headers["etag"]) == (200, b"", len(data), etag)
    status, headers, body = s.request("HEAD", "/models/tiny.gguf", {"range": "bytes=-5"})
    assert (status, body, headers["content-range"]) == (206, b"", f"bytes {len(data) - 5}-{len(data) - 1}/{len(data)}")


def test_only_get_and_head(site):
    s, tiny = site["server"], site["models"] / "tiny.gguf"
    before = tiny.read_bytes()
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in ("/models/tiny.gguf", "/loras/escape.gguf", "/", "/app.js", "/dist/genai_bundle.mjs", "/api/models", "/api/loras/events"):
            status, headers, _ = s.request(method, path, body=b"x")
            assert status == 405 and headers["allow"] in ("GET, HEAD", "HEAD, GET"), (method, path)
    assert tiny.read_bytes() == before


def test_traversal_never_reads_outside(site):
    s, root = site["server"], site["root"]
    secret = str(root / "secret.txt")
    payloads = [
        "../secret.txt", "../../secret.txt", "../../../secret.txt", "./../secret.txt", "x/../../secret.txt",
        "%2e%2e%2fsecret.txt", "%2e%2e%2f%2e%2e%2fsecret.txt", "%2E%2E/%2E%2E/secret.txt", "..%2f..%2fsecret.txt",
        "%252e%252e%252fsecret.txt", "%252e%252e%252f%252e%252e%252fsecret.txt", "..%252f..%252fsecret.txt",
        "..\\secret.txt", "..\\..\\secret.txt", "..%5csecret.txt", "..%5c..%5csecret.txt",
        "/" + secret.lstrip("/"), quote(secret, safe=""), "%2f" + quote(secret.lstrip("/"), safe=""), secret.replace("/", "%5c"),
        "secret.txt%00", "..%2fsecret.txt%00.gguf", "tiny.gguf%00/../../secret.txt", "%00", "%c0%ae%c0%ae/secret.txt",
        "escape.gguf", "escape.js", "escape.mjs", "../outside.gguf", "..%2f..%2foutside.gguf",
    ]
    for prefix in ("/models/", "/loras/", "/dist/", "/"):
        for payload in payloads:
            status, _, body = s.get(prefix + payload)
            assert status in (403, 404), (prefix + payload, status)
            assert SECRET not in body, prefix + payload
    for api in ("/api/models", "/api/loras"):
        status, _, body = s.get(api)
        assert status == 200 and SECRET not in body and b"escape" not in body, api


def test_adapter_checks_and_truncation(tmp_path):
    full = write_adapter(tmp_path / "a.gguf", rank=2, alpha=16.0, base="SmolLM2-135M-Instruct", n=8)
    assert read_lora_info(full) == {"architecture": "llama", "base_model": "SmolLM2-135M-Instruct", "rank": 2, "alpha": 16.0}
    assert read_lora_info(write_adapter(tmp_path / "b.gguf", rank=3, base=None))["base_model"] is None
    g = GGUFFile(full)
    data_end = max(t.offset + t.n_bytes for t in g.tensors.values())
    tensor_start = min(t.offset for t in g.tensors.values())
    g.close()
    cut = Path(shutil.copy(full, tmp_path / "cut.gguf"))
    assert data_end == full.stat().st_size and tensor_start < data_end  # the last tensor's data ends the file
    for n in reversed(range(data_end)):  # every prefix of the file (a copy in progress) is refused
        os.truncate(cut, n)
        with pytest.raises(ModelFormatError, match="truncated|not a valid GGUF|not a GGUF") as e:
            read_lora_info(cut)
        assert str(cut) in str(e.value)
    for bad, fragment in [(write_model(tmp_path / "m.gguf"), "general.type is None"),
                          (write_adapter(tmp_path / "c.gguf", 2, pair=False), "no matching lora_b")]:
        with pytest.raises(ModelFormatError, match=fragment):
            read_lora_info(bad)


class EventReader:
    """Reads /api/loras/events in a thread; each `data:` event's JSON goes to a queue."""

    def __init__(self, server: Server):
        self.conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        self.conn.request("GET", "/api/loras/events")
        self.response = self.conn.getresponse()
        self.events: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for line in self.response:
                if line.startswith(b"data: "):
                    self.events.put(json.loads(line[6:]))
        except (OSError, ValueError):
            pass

    def until(self, predicate, timeout: float = 15.0):
        deadline = time.monotonic() + timeout
        while True:
            listing = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if predicate(listing):
                return listing

    def close(self) -> None:
        self.conn.sock.shutdown(socket.SHUT_RDWR)  # the reader sees the end of the stream
        self.thread.join(10)
        self.conn.close()


def test_lora_hot_swap(site, tmp_path):
    s, loras = site["server"], site["loras"]
    events = EventReader(s)
    assert events.response.status == 200 and events.response.getheader("content-type").startswith("text/event-stream")
    assert events.response.getheader("cross-origin-embedder-policy") == "require-corp"
    try:
        assert events.until(lambda listing: True) == []  # the list on connect
        names = lambda listing: {e["name"]: e for e in listing}  # noqa: E731

        # add: written under an ignored *.tmp name, renamed when complete
        write_adapter(loras / "style.gguf.tmp", rank=2, seed=1)
        assert s.json("/api/loras") == []
        os.replace(loras / "style.gguf.tmp", loras / "style.gguf")
        got = events.until(lambda l: "style.gguf" in names(l))
        entry = names(got)["style.gguf"]
        assert {k: entry[k] for k in ("url", "size", "architecture", "base_model", "rank", "alpha")} == {
            "url": "./loras/style.gguf", "size": (loras / "style.gguf").stat().st_size, "architecture": "llama", "base_model": "tiny", "rank": 2, "alpha": 8.0}
        assert s.json("/api/loras") == got
        status, headers, body = s.get("/loras/style.gguf")
        assert (status, body) == (200, (loras / "style.gguf").read_bytes())
        old_etag = headers["etag"]

        # replace: a rank-4 adapter over it
        write_adapter(tmp_path / "new.gguf", rank=4, seed=2, alpha=4.0)
        os.replace(tmp_path / "new.gguf", loras / "style.gguf")
        got = events.until(lambda l: names(l).get("style.gguf", {}).get("rank") == 4)
        assert names(got)["style.gguf"]["alpha"] == 4.0
        status, headers, body = s.get("/loras/style.gguf", if_none_match=old_etag)
        assert (status, body) == (200, (loras / "style.gguf").read_bytes()) and headers["etag"] != old_etag

        # a half-copied adapter is neither listed nor served, until it is complete
        whole = write_adapter(tmp_path / "half.gguf", rank=3, seed=3).read_bytes()
        (loras / "half.gguf").write_bytes(whole[: len(whole) // 2])
        assert "half.gguf" not in names(s.json("/api/loras")) and s.get("/loras/half.gguf")[0] == 404
        time.sleep(1.2)  # two polls: still refused
        assert "half.gguf" not in names(s.json("/api/loras")) and s.get("/loras/half.gguf")[0] == 404
        with open(loras / "half.gguf", "ab") as f:
            f.write(whole[len(whole) // 2 :])
        got = events.until(lambda l: "half.gguf" in names(l))
        assert names(got)["half.gguf"]["rank"] == 3 and s.get("/loras/half.gguf")[::2] == (200, whole)

        # ignored names never show, valid as they are
        for ignored in (".hidden.gguf", "x.gguf.part", "y.tmp"):
            shutil.copy(loras / "half.gguf", loras / ignored)
        assert set(names(s.json("/api/loras"))) == {"style.gguf", "half.gguf"}
        assert all(s.get(f"/loras/{quote(n)}")[0] == 404 for n in (".hidden.gguf", "x.gguf.part", "y.tmp"))

        # delete
        (loras / "style.gguf").unlink()
        got = events.until(lambda l: "style.gguf" not in names(l))
        assert set(names(got)) == {"half.gguf"} and s.get("/loras/style.gguf")[0] == 404
    finally:
        events.close()
        for name in os.listdir(loras):
            if name != "escape.gguf":
                os.unlink(loras / name)


def test_streams_a_big_file_in_constant_memory(tmp_path):
    size = 320 << 20
    model = write_sparse_model(tmp_path / "big.gguf", size - 4096)
    size = model.stat().st_size
    server = Server("--model", model, "--web-dir", write_web(tmp_path / "web"), log=tmp_path / "server.log").wait_ready()
    try:
        status_file = Path(f"/proc/{server.proc.pid}/status")

        def kib(field: str) -> int:
            line = next(l for l in status_file.read_text().splitlines() if l.startswith(field + ":"))
            return int(line.split()[1])

        before = kib("VmRSS")
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        for headers, expect in [({}, size), ({"range": f"bytes={size // 3}-"}, size - size // 3)]:
            c.request("GET", "/models/big.gguf", headers=headers)
            r = c.getresponse()
            assert int(r.getheader("content-length")) == expect
            received = 0
            while chunk := r.read(1 << 20):
                received += len(chunk)
            assert received == expect
        c.close()
        peak = kib("VmHWM")
        assert (peak - before) * 1024 < 48 << 20, (before, peak)  # the file is 320 MiB
        assert peak * 1024 < size // 3, peak
    finally:
        server.stop()


def test_warns_when_bound_beyond_loopback(tmp_path):
    (tmp_path / "models").mkdir()
    server = Server("--models-dir", tmp_path / "models", "--web-dir", write_web(tmp_path / "web"), log=tmp_path / "log", host="0.0.0.0")
    try:
        server.wait_ready()
        log = server.log.read_text()
        assert "serve-models: warning: binding to 0.0.0.0" in log and "without authentication" in log, log
    finally:
        server.stop()


def test_default_model_and_missing_bundle(smollm2_path, tmp_path):
    from wgllm.assets import DEFAULT_MODEL_NAME, default_model_path

    assert default_model_path() == smollm2_path  # cached by the fixture: no download here
    (tmp_path / "loras").mkdir()
    web = write_web(tmp_path / "web", dist=False)
    server = Server("--loras-dir", tmp_path / "loras", "--web-dir", web, log=tmp_path / "log").wait_ready()
    try:
        log = server.log.read_text()
        assert "serving the default model" in log and DEFAULT_MODEL_NAME in log, log
        assert "open http://127.0.0.1:" in log and "npm run build" in log, log
        listed = server.json("/api/models")
        assert [(m["name"], m["architecture"], m["size"]) for m in listed] == [(DEFAULT_MODEL_NAME, "llama", smollm2_path.stat().st_size)]
        assert server.get(listed[0]["url"][1:], range="bytes=0-3")[::2] == (206, b"GGUF")
        status, _, body = server.get("/dist/genai_bundle.mjs")
        assert status == 404 and b"npm run build" in body
    finally:
        server.stop()


def test_bad_options_are_named(tmp_path, capsys):
    adapter = write_adapter(tmp_path / "a.gguf", 2)
    for argv, fragment in [(["--model", str(tmp_path / "nope.gguf")], "nope.gguf: no such model file"),
                           (["--model", str(adapter)], "is an adapter"),
                           (["--models-dir", str(tmp_path), "--loras-dir", str(tmp_path / "none")], "--loras-dir"),
                           (["--models-dir", str(tmp_path), "--port", "70000"], "--port 70000")]:
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and "serve-models: error:" in err and fragment in err, err


def test_export_static_served_by_a_plain_static_server(tmp_path, capsys):
    models, loras, web = tmp_path / "models", tmp_path / "loras", write_web(tmp_path / "web")
    models.mkdir()
    loras.mkdir()
    write_model(models / "tiny one.gguf")
    write_adapter(loras / "a.gguf", rank=2, alpha=32.0)
    out = tmp_path / "site"
    main(["--export-static", str(out), "--models-dir", str(models), "--loras-dir", str(loras), "--web-dir", str(web)])
    assert "1 models, 1 LoRA adapters" in capsys.readouterr().out
    port = free_port()
    static = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(out), str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        plain = Server.__new__(Server)
        plain.port, plain.proc, plain.log = port, static, tmp_path / "none"
        plain.log.write_text("")
        plain.wait_ready()
        listed = json.loads(plain.get("/api/models")[2])
        assert [(m["name"], m["size"], m["architecture"]) for m in listed] == [("tiny one.gguf", (models / "tiny one.gguf").stat().st_size, "llama")]
        assert plain.get(urljoin("/", listed[0]["url"]))[::2] == (200, (models / "tiny one.gguf").read_bytes())
        lora = json.loads(plain.get("/api/loras")[2])
        assert [(l["name"], l["rank"], l["alpha"], l["base_model"]) for l in lora] == [("a.gguf", 2, 32.0, "tiny")]
        assert plain.get(urljoin("/", lora[0]["url"]))[2] == (loras / "a.gguf").read_bytes()
        assert plain.get("/")[::2] == (200, (web / "demo" / "index.html").read_bytes())
        assert plain.get("/dist/genai_bundle.mjs")[2] == (web / "dist" / "genai_bundle.mjs").read_bytes()
        assert b"Cross-Origin-Embedder-Policy: require-corp" in plain.get("/_headers")[2].replace(b"cross-origin-embedder-policy", b"Cross-Origin-Embedder-Policy")
    finally:
        static.terminate()
        static.wait()
    for argv, fragment in [([str(out)], "not an empty folder"), ([str(tmp_path / "x")], "npm run build")]:
        if fragment == "npm run build":
            shutil.rmtree(web / "dist")
        with pytest.raises(SystemExit):
            main(["--export-static", *argv, "--models-dir", str(models), "--web-dir", str(web)])
        assert fragment in capsys.readouterr().err
    assert not (tmp_path / "x").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
