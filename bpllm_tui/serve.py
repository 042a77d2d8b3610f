"""Browser access: ``bpllm-tui --serve`` runs the same app behind textual-serve on localhost.

Each browser tab starts its own ``bpllm-tui`` process (attached to the same workspace, like a
second terminal would be), so closing a tab never stops the engine. The server binds to
127.0.0.1 unless told otherwise: reach it from another machine through an SSH tunnel
(``ssh -L 8000:localhost:8000 rig``), not by opening the port.

Whoever can talk to the port can start and stop runs, so the server guards every request the
way Jupyter does (textual-serve itself checks nothing):

* a random token, printed at start in the URL to open (``/?token=…``); the first page load
  with it sets an HttpOnly, SameSite=Strict cookie so the page's own WebSocket, scripts and
  fonts pass too. Without the token (query or cookie) every request gets 401/403.
* an Origin check: a request carrying an ``Origin`` header (every browser WebSocket does) must
  come from the page's own origin, so a web page on another site can't drive the control room.
* on a loopback bind, a Host check (``localhost``/``127.0.0.1``/``[::1]`` only), so a DNS
  rebinding name can't pose as the server's own origin.
* ``--no-token`` drops the token (only on a loopback address), never the Origin or Host checks.

The page is textual-serve's own with its web fonts served from textual-serve's static folder
(``templates/app_index.html``): it loads nothing from the internet.
"""
from __future__ import annotations

import hmac
import importlib.resources
import ipaddress
import os
import secrets
import shlex
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bpllm_tui.images import ENV as IMAGES_ENV

# package data of bpllm_tui (pyproject: package-data); a regular package, so files() is a real folder
TEMPLATES = Path(str(importlib.resources.files("bpllm_tui").joinpath("templates")))
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def serve_command(workspace: Path, extra: list[str]) -> str:
    return shlex.join([sys.executable, "-m", "bpllm_tui", "-w", str(workspace.resolve()), *extra])


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    """``Host`` header -> host name without port (``[::1]:8000`` -> ``::1``)."""
    return (urlsplit(f"//{host_header}").hostname or "").lower()


def check_request(*, host_header: str, origin: str | None, supplied_token: str | None, token: str | None,
                  loopback: bool) -> tuple[int, str] | None:
    """Why a request is refused, as (HTTP status, one line), or None when it may pass."""
    if loopback and not is_loopback(_host_name(host_header)):
        return 403, f"Host {host_header!r} is not this server's (open http://127.0.0.1:<port>/)"
    if origin is not None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or parts.netloc.lower() != host_header.lower():
            return 403, f"cross-origin request from {origin!r} refused"
    if token is not None:
        if not supplied_token:
            return 401, "token required: open the URL that bpllm-tui --serve printed (…/?token=…)"
        if not hmac.compare_digest(supplied_token.encode(), token.encode()):
            return 403, "wrong token: open the URL that bpllm-tui --serve printed (…/?token=…)"
    return None


def make_server(command: str, *, host: str, port: int, token: str | None, title: str = "bpllm") -> Any:
    """A textual-serve Server that checks token, Origin and Host on every HTTP and WebSocket request."""
    import aiohttp_jinja2
    import jinja2
    from aiohttp import web
    from textual_serve.server import Server, log, to_int

    loopback = is_loopback(host)
    cookie = f"bpllm-token-{port}"  # cookies ignore the port: one name per server

    class GuardedServer(Server):
        def __init__(self) -> None:
            super().__init__(command, host=host, port=port, title=title, templates_path=TEMPLATES)
            self.token = token
            self.url = f"{self.public_url}/" + (f"?token={token}" if token else "")

        async def _make_app(self) -> web.Application:
            app = web.Application(middlewares=[self._guard])
            aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(self.templates_path))
            app.add_routes([
                web.get("/", self.handle_index, name="index"),
                web.get("/ws", self.handle_websocket, name="websocket"),
                web.get("/download/{key}", self.handle_download, name="download"),
                web.static("/static", self.statics_path, show_index=False, name="static"),
            ])
            app.on_startup.append(self.on_startup)
            app.on_shutdown.append(self.on_shutdown)
            return app

        @web.middleware
        async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
            from_query = request.query.get("token")
            refused = check_request(host_header=request.host, origin=request.headers.get("Origin"),
                                    supplied_token=from_query or request.cookies.get(cookie),
                                    token=self.token, loopback=loopback)
            if refused is not None:
                status, why = refused
                log.warning("refused %s %s from %s: %s", request.method, request.path, request.remote, why)
                return web.Response(status=status, text=why + "\n")
            response = await handler(request)
            if self.token and from_query and not response.prepared and request.cookies.get(cookie) != self.token:
                response.set_cookie(cookie, self.token, httponly=True, samesite="Strict", path="/")
            return response

        @aiohttp_jinja2.template("app_index.html")
        async def handle_index(self, request: web.Request) -> dict[str, Any]:
            """The page, with URLs on the host the browser used (the cookie is per host name)."""
            scheme = "wss" if request.secure else "ws"
            return {
                "font_size": to_int(request.query.get("fontsize", "16"), 16),
                "app_websocket_url": f"{scheme}://{request.host}/ws",
                "config": {"static": {"url": "/static/"}},
                "application": {"name": self.title},
            }

        async def on_startup(self, app: web.Application) -> None:
            if not self.token:
                print("bpllm-tui --serve: --no-token: any local process may drive the control room", flush=True)
            print(f"bpllm-tui --serve: open {self.url}", flush=True)
            print("bpllm-tui --serve: Ctrl+C quits", flush=True)

    return GuardedServer()


def serve(workspace: Path, host: str = "127.0.0.1", port: int = 8000, extra: list[str] | None = None,
          *, use_token: bool = True) -> int:
    try:
        import textual_serve.server  # noqa: F401
    except ImportError:
        print("bpllm-tui --serve needs textual-serve: pip install 'textual-serve==1.1.3'", file=sys.stderr)
        return 1
    if not is_loopback(host):
        if not use_token:
            print(f"bpllm-tui --serve: --no-token is allowed on a loopback address only, not {host}",
                  file=sys.stderr)
            return 1
        print(f"warning: serving on {host}: anyone who can reach this port and has the token can drive the engine",
              file=sys.stderr)
    token = secrets.token_urlsafe(32) if use_token else None
    # the browser cannot show sixel/kitty pictures: the app it launches shows preview PNG paths instead
    os.environ[IMAGES_ENV] = "0"
    make_server(serve_command(workspace, extra or []), host=host, port=port, token=token).serve()
    return 0
