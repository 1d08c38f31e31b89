"""serve-models' Host check (DNS rebinding): forged Host headers sent to a real uvicorn on loopback."""

from __future__ import annotations

import socket

import pytest

from test_server import Server, write_adapter, write_model, write_web
from wgllm.hosts import AllowedHosts, host_name
from wgllm.server import main


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("hosts")
    models, loras, web = root / "models", root / "loras", write_web(root / "web")
    models.mkdir()
    loras.mkdir()
    write_model(models / "tiny.gguf")
    write_adapter(loras / "a.gguf", 2)
    return root, ["--models-dir", models, "--loras-dir", loras, "--web-dir", web]


def raw(port: int, request: bytes) -> tuple[int, bytes]:
    """Status and body of a request sent byte for byte (for Host headers http.client cannot send)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


ROUTES = ["/", "/app.js", "/dist/genai_bundle.mjs", "/api/models", "/api/loras", "/api/loras/events", "/models/tiny.gguf", "/loras/a.gguf"]


def test_forged_hosts_are_refused_on_every_route(folders):
    root, args = folders
    s = Server(*args, log=root / "default.log").wait_ready()
    try:
        port = s.port
        for host in ["evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", f"localhost.evil.example:{port}", "[::1",
                     "::1", "evil.example:port", f"127.0.0.1:{port}@evil.example", "evil.example\\"]:
            for method, path in [("GET", p) for p in ROUTES] + [("HEAD", "/models/tiny.gguf"), ("POST", "/api/loras")]:
                status, headers, body = s.request(method, path, {"Host": host})
                assert status == 403 and headers["content-type"] == "text/plain; charset=utf-8", (host, method, path, status)
                if method != "HEAD":
                    assert repr(host) in body.decode(), (host, body)
        _, _, body = s.get("/api/models", host="evil.example:8000")
        assert "--allowed-hosts evil.example." in body.decode() and b"tiny.gguf" not in body, body
        # loopback names and any IP address, with or without a port
        for host in [f"127.0.0.1:{port}", "127.0.0.1", "127.3.4.5:1", "localhost", f"LocalHost.:{port}", f"my-app.localhost:{port}",
                     f"[::1]:{port}", "[::1]", "192.168.1.5:8000", "[fe80::1]"]:
            status, headers, body = s.request("GET", "/api/models", {"Host": host})
            assert status == 200 and b"tiny.gguf" in body, (host, status, body)
        assert s.request("GET", "/models/tiny.gguf", {"Host": "localhost", "Range": "bytes=0-3"})[::2] == (206, b"GGUF")
        # no Host at all (HTTP/1.0 allows that), and two of them
        status, body = raw(port, b"GET /api/models HTTP/1.0\r\n\r\n")
        assert status == 403 and b"(sent 0 times)" in body and b"tiny.gguf" not in body, (status, body)
        status, body = raw(port, b"GET /api/models HTTP/1.0\r\nHost: localhost\r\n\r\n")
        assert status == 200 and b"tiny.gguf" in body, (status, body)
        status, body = raw(port, b"GET /api/models HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
        assert status in (400, 403) and b"tiny.gguf" not in body, (status, body)  # h11 refuses it (400) before the app sees it
        log = s.log.read_text()
        assert log.count("refused a request for Host 'evil.example'") == 1, log  # named once, however often it comes
    finally:
        s.stop()


def test_allowed_hosts_admits_the_names_given(folders):
    root, args = folders
    s = Server(*args, "--allowed-hosts", "evil.example", "--allowed-hosts", ".corp.test, *.dev.test", log=root / "allowed.log").wait_ready()
    try:
        for host, want in [("evil.example", 200), (f"evil.example:{s.port}", 200), ("EVIL.example.", 200), ("www.evil.example", 403),
                           ("corp.test", 200), ("a.b.corp.test", 200), ("xcorp.test", 403), ("x.dev.test", 200), ("dev.test", 403),
                           ("other.example", 403), ("localhost", 200)]:
            assert s.request("GET", "/api/loras", {"Host": host})[0] == want, host
    finally:
        s.stop()
    s = Server(*args, "--allowed-hosts", "all", log=root / "all.log").wait_ready()
    try:
        status, _, body = s.request("GET", "/api/models", {"Host": "evil.example"})
        assert status == 200 and b"tiny.gguf" in body
        assert "--allowed-hosts all: the Host header is not checked" in s.log.read_text()
    finally:
        s.stop()


def test_bad_allowed_hosts_are_named(tmp_path, capsys):
    write_model(tmp_path / "m.gguf")
    for value in ["evil.example:8000", "http://evil.example", "a,,b", "*."]:
        with pytest.raises(SystemExit) as e:
            main(["--model", str(tmp_path / "m.gguf"), "--allowed-hosts", value])
        err = capsys.readouterr().err
        assert e.value.code == 2 and f"--allowed-hosts {value!r}" in err and "expected NAME, .NAME" in err, err


def test_the_bound_name_is_allowed():
    bound = AllowedHosts(None, "Box.LAN")
    assert bound.allows("box.lan") and not bound.allows("other.lan") and not bound.allows("x.box.lan")
    assert AllowedHosts(None, "0.0.0.0").names == set() and not AllowedHosts(None, "0.0.0.0").allows("evil.example")
    assert [host_name(h) for h in ["Box.Lan.:80", "[::1]:8000", "[::1]x", "a..b", "-a.b", "a.b:", "a.b:123456"]] == ["box.lan", "::1", None, None, None, None, None]
