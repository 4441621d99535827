"""Same-origin only: the studio answers its own page, not pages of other sites.

A page on another site can make the user's browser send requests to the studio (a form POST needs
no permission), and a site whose name resolves to 127.0.0.1 (DNS rebinding) can even read the
answers. So every request must name the studio itself in ``Host`` (the address it listens on, or
a loopback name with its port), and a request that carries an ``Origin`` must come from that same
address; ``painterly serve --allow-origin URL`` adds other origins (and their hosts), e.g. a
reverse proxy's. Refusals are 403 with the usual ``{"detail", "field"}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse

LOOPBACK = ("127.0.0.1", "localhost", "::1")
UNSAFE = ("POST", "PUT", "PATCH", "DELETE")


def normal_origin(url: str) -> str:
    """``scheme://host[:port]`` in lower case, as browsers send ``Origin``; ValueError if it is not one."""
    parts = urlsplit(url.strip().rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
        raise ValueError(f"{url!r} is not an origin such as http://studio.example:8000")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}"


def _host_names(host: str, port: int) -> set[str]:
    names = {host} | (set(LOOPBACK) if host in LOOPBACK or host in ("0.0.0.0", "::") else set())
    shown = {f"[{n}]" if ":" in n else n for n in names if n not in ("0.0.0.0", "::")}
    return {f"{n}:{port}" for n in shown} | ({n for n in shown} if port in (80, 443) else set())


class SameOrigin:
    """ASGI middleware: refuse requests whose Host or Origin is not the studio's own (403)."""

    def __init__(self, app, allowed_origins: Sequence[str] = ()) -> None:
        self.app = app
        self.extra_origins = {normal_origin(o) for o in allowed_origins}
        self.extra_hosts = {urlsplit(o).netloc for o in self.extra_origins}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
        else:
            await JSONResponse({"detail": refusal, "field": None}, 403)(scope, receive, send)

    def refusal(self, scope) -> str | None:
        """Why this request is refused, or None."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        server_host, server_port = scope.get("server") or ("127.0.0.1", 80)
        hosts = _host_names(server_host, server_port) | self.extra_hosts
        host = headers.get("host", "").lower()
        if host not in hosts:
            return (f"this studio answers requests for {sorted(hosts)[0]} only, not {host or 'no host'!r}; "
                    "start it with --allow-origin to allow another address")
        origin = headers.get("origin")
        if origin is not None:
            own = {f"{scope.get('scheme', 'http')}://{host}"}
            if origin.lower().rstrip("/") not in own | self.extra_origins:
                return f"requests from other sites ({origin[:80]}) are refused; only the studio's own page may use it"
        elif scope["method"] in UNSAFE and headers.get("sec-fetch-site") == "cross-site":
            return "requests from other sites are refused; only the studio's own page may use it"
        return None
