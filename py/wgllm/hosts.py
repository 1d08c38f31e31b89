"""serve-models' Host check: a defence against DNS rebinding, as the JavaScript dev servers have.

A page on another site can point its own domain at 127.0.0.1 once the browser has loaded it (DNS
rebinding) and then read this server as if same-origin. Its requests still name that domain in
the `Host` header, so the server answers only hosts it knows to be its own:

  - IP addresses (any: 127.0.0.1, [::1], 192.168.1.5, ...). A rebound domain never arrives as an
    IP literal, and a page on another origin that fetches an address directly is cross-origin
    (no CORS headers here, CORP same-origin), so its reads are blocked by the browser anyway. Vite
    and webpack-dev-server let IP literals through for the same reason.
  - localhost and *.localhost (RFC 6761: resolved to loopback by the browser itself).
  - the name given to --host, when it is a name.
  - each --allowed-hosts entry: `name` (that name only), `.name` (it and every subdomain, as
    webpack-dev-server and Vite read a leading dot), `*.name` (its subdomains only), or `all`
    (no check at all; say so only behind a proxy that checks Host itself).

Ports are ignored (any port); a trailing dot (`localhost.`) is the same name. Anything else,
a missing or repeated Host header included, gets 403 with a plain-text body naming the host and
the flag that admits it.
"""

from __future__ import annotations

import ipaddress
import re
import sys

_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*")
_PORT = re.compile(r"[0-9]{1,5}")
_MAX_WARNED = 64


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def host_name(header: str) -> str | None:
    """The host of a Host header value, lower case, without port or trailing dot; None if malformed."""
    value = header.strip().lower()
    if value.startswith("["):  # an IPv6 literal: [addr] or [addr]:port
        end = value.find("]")
        host, rest = value[1:end], value[end + 1:]
        if end < 0 or _ip(host) is None or _ip(host).version != 6:
            return None
    else:
        host, colon, port = value.partition(":")
        rest = colon + port
    if rest and not (rest[0] == ":" and _PORT.fullmatch(rest[1:])):
        return None
    if value.startswith("["):
        return host
    host = host[:-1] if host.endswith(".") else host
    return host if _NAME.fullmatch(host) else None


class AllowedHosts:
    """The hosts serve-models answers (see the module docstring)."""

    def __init__(self, entries: list[str] | None = None, bind_host: str | None = None):
        """`entries`: --allowed-hosts values (each may hold several, comma-separated);
        `bind_host`: --host. Raises ValueError naming a malformed entry."""
        self.names: set[str] = set()
        self.domains: set[str] = set()  # ".name": the name and its subdomains
        self.subdomains: set[str] = set()  # "*.name": subdomains only
        self.all = False
        for entry in entries or []:
            for item in entry.split(","):
                self._add(item.strip().lower(), entry)
        if bind_host and _ip(bind_host.strip("[]")) is None:
            self.names.add(bind_host.lower().rstrip("."))

    def _add(self, item: str, entry: str) -> None:
        if item in ("all", "*"):
            self.all = True
            return
        for prefix, into in (("*.", self.subdomains), (".", self.domains), ("", self.names)):
            if item.startswith(prefix):
                name = item[len(prefix):].rstrip(".")
                if _NAME.fullmatch(name) or (prefix == "" and _ip(name.strip("[]")) is not None):
                    into.add(name)
                    return
                break
        raise ValueError(f"--allowed-hosts {entry!r}: {item!r} is not a host name; expected NAME, .NAME (it and its subdomains), "
                         "*.NAME (its subdomains) or all, comma-separated, without ports")

    def allows(self, host: str) -> bool:
        """Whether `host` (as host_name returns it) may be answered."""
        if self.all or _ip(host) is not None or host == "localhost" or host.endswith(".localhost") or host in self.names:
            return True
        parts = host.split(".")
        suffixes = {".".join(parts[i:]) for i in range(1, len(parts))}
        return host in self.domains or bool(suffixes & (self.domains | self.subdomains))


def _refusal(shown: str, hint: str) -> bytes:
    return (f"serve-models refused this request: the Host header {shown} is not one of its allowed hosts "
            f"(localhost, *.localhost, IP addresses, --host and --allowed-hosts). {hint}\n").encode()


class HostCheck:
    """ASGI middleware: 403 for HTTP and WebSocket requests whose Host `allowed` does not admit."""

    def __init__(self, app, allowed: AllowedHosts):
        self.app, self.allowed = app, allowed
        self._warned: set[str] = set()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket") or self.allowed.all:
            return await self.app(scope, receive, send)
        values = [v.decode("latin-1") for k, v in scope["headers"] if k == b"host"]
        host = host_name(values[0]) if len(values) == 1 else None
        if host is not None and self.allowed.allows(host):
            return await self.app(scope, receive, send)
        if len(values) != 1:
            shown, hint = f"(sent {len(values)} times)", "Send exactly one Host header."
        else:
            shown = repr(values[0][:100])
            hint = (f"If this server is reached by that name, restart it with --allowed-hosts {host}." if host is not None
                    else "It is not a valid host[:port].")
        body = _refusal(shown, hint)
        if shown not in self._warned and len(self._warned) < _MAX_WARNED:
            self._warned.add(shown)
            print(f"serve-models: warning: refused a request for Host {shown} (see --allowed-hosts)", file=sys.stderr, flush=True)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
