"""`bpllm-tui --serve` answers a browser on localhost, and only one that holds the printed token and comes
from the page's own origin (needs the optional textual-serve package; aiohttp comes with it).

Every test starts the real server in a subprocess on a loopback port and talks real HTTP/WebSocket to it.
"""
from __future__ import annotations

import asyncio
import queue
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("textual_serve", reason="textual-serve not installed (pip install 'textual-serve==1.1.3')")
import aiohttp  # noqa: E402  (a dependency of textual-serve)
import psutil  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
EVIL = "http://evil.example"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    def __init__(self, proc: subprocess.Popen, port: int, url: str, output: list[str]):
        self.proc, self.port, self.url, self.output = proc, port, url, output
        self.base = f"http://127.0.0.1:{port}"
        match = re.search(r"[?&]token=([^&\s]+)", url)
        self.token = match.group(1) if match else None

    def children(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children(recursive=True)


def start(workspace: Path, *extra: str) -> Served:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bpllm_tui", "-w", str(workspace), "--serve", "--port", str(port),
                             *extra], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, text=True)
    output: list[str] = []
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        output.append(line)
        match = re.search(r"open (http://\S+)", line)
        if match:
            for _ in range(100):  # the URL is printed on startup, just before the socket listens
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(0.1)
            return Served(proc, port, match.group(1), output)
    proc.kill()
    raise AssertionError("bpllm-tui --serve printed no URL:\n" + "".join(output))


def stop(served: Served) -> None:
    served.proc.terminate()
    try:
        served.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        served.proc.kill()
        served.proc.wait(timeout=10)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    subprocess.run([sys.executable, "-m", "engine.cli", "init", "-w", str(ws)], cwd=ROOT, check=True,
                   stdin=subprocess.DEVNULL, capture_output=True)
    return ws


@pytest.fixture
def served(workspace: Path):
    s = start(workspace)
    yield s
    stop(s)


def runs_started(workspace: Path) -> list[str]:
    runs = workspace / "runs"
    return sorted(p.name for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []


async def _get(url: str, headers: dict[str, str] | None = None, session: aiohttp.ClientSession | None = None):
    own = session is None
    session = session or aiohttp.ClientSession()
    try:
        async with session.get(url, headers=headers or {}, allow_redirects=False) as response:
            return response.status, await response.read()
    finally:
        if own:
            await session.close()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    return asyncio.run(_get(url, headers))


async def _ws_refused(url: str, headers: dict[str, str], send: list) -> int:
    """Open a WebSocket and send ``send``; the HTTP status of a refused handshake (0 when it opened)."""
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url, headers=headers) as ws:
                await ws.send_json(send)
                await asyncio.sleep(1.0)
                return 0
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


def test_serve_binds_localhost_and_prints_a_token_url(served: Served):
    assert served.url.startswith(f"http://127.0.0.1:{served.port}/?token=")
    assert served.token and len(served.token) >= 32
    status, body = get(served.url)
    assert status == 200
    text = body.decode("utf-8", "replace")
    assert "bpllm" in text and "textual" in text.lower()
    # not reachable on a non-loopback address of this host
    addresses = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
    for address in addresses - {"127.0.0.1"}:
        with socket.socket() as s:
            s.settimeout(1)
            assert s.connect_ex((address, served.port)) != 0, f"--serve must bind to localhost only, not {address}"


def test_every_request_needs_the_token(served: Served):
    for path in ("/", "/static/js/textual.js", "/static/fonts/RobotoMono-VariableFont_wght.ttf", "/download/x"):
        status, body = get(served.base + path)
        assert status == 401, (path, status)
        assert b"token required" in body
    status, _ = get(served.base + "/?token=" + "x" * len(served.token))
    assert status == 403
    # the WebSocket too, even from the right origin
    assert asyncio.run(_ws_refused(served.base.replace("http", "ws") + "/ws", {"Origin": served.base},
                                   ["stdin", "s"])) == 401
    assert served.children() == []


def test_foreign_origin_and_host_are_refused_even_with_the_token(served: Served):
    status, body = get(served.url, {"Origin": EVIL})
    assert status == 403 and b"cross-origin" in body
    status, body = get(served.url, {"Host": f"evil.example:{served.port}"})  # DNS rebinding
    assert status == 403
    status, _ = get(served.url, {"Host": f"evil.example:{served.port}", "Origin": f"http://evil.example:{served.port}"})
    assert status == 403


def test_evil_origin_websocket_cannot_start_a_run(served: Served, workspace: Path):
    """The reported attack: a page on another site opens the WebSocket and types `s` (start a run). Even
    holding the token, the handshake is refused: no app process is spawned, no run directory appears."""
    ws_url = f"ws://127.0.0.1:{served.port}/ws?width=80&height=24&token={served.token}"
    assert asyncio.run(_ws_refused(ws_url, {"Origin": EVIL}, ["stdin", "s"])) == 403
    assert asyncio.run(_ws_refused(ws_url, {"Origin": f"http://evil.example:{served.port}"}, ["stdin", "s"])) == 403
    time.sleep(1.0)
    assert served.children() == []
    assert runs_started(workspace) == []


def test_token_page_sets_a_cookie_that_lets_the_pages_websocket_in(served: Served):
    """The browser's flow: open the printed URL, then the page's own WebSocket (no token in its URL) from
    the page's origin reaches a real bpllm-tui process that paints the screen."""

    async def flow() -> tuple[int, int]:
        jar = aiohttp.CookieJar(unsafe=True)  # cookies for an IP host
        async with aiohttp.ClientSession(cookie_jar=jar) as session:
            status, _ = await _get(served.url, session=session)
            assert status == 200
            status_js, _ = await _get(served.base + "/static/js/textual.js", session=session)
            assert status_js == 200
            got = 0
            async with session.ws_connect(f"ws://127.0.0.1:{served.port}/ws?width=100&height=30",
                                          headers={"Origin": served.base}) as ws:
                await ws.send_json(["resize", {"width": 100, "height": 30}])
                deadline = time.time() + 90
                while time.time() < deadline and got < 2000:
                    try:
                        msg = await ws.receive(timeout=5)
                    except asyncio.TimeoutError:
                        continue
                    if msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                        got += len(msg.data)
                    elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        break
                children = len(served.children())
            return got, children

    got, children = asyncio.run(flow())
    assert got >= 2000, f"the app painted only {got} bytes"
    assert children >= 1  # a real bpllm-tui process ran behind the socket


def test_page_loads_nothing_from_the_internet(served: Served):
    async def fetch_all() -> tuple[str, dict[str, int]]:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            _, body = await _get(served.url, session=session)
            html = body.decode()
            refs = set(re.findall(r'(?:href|src)="([^"]+)"|url\("?([^")]+)"?\)', html))
            statuses = {}
            for ref in {a or b for a, b in refs}:
                statuses[ref] = (await _get(served.base + ref, session=session))[0]
            _, css = await _get(served.base + "/static/css/xterm.css", session=session)
            return html + css.decode(), statuses

    text, statuses = asyncio.run(fetch_all())
    assert "googleapis" not in text and "gstatic" not in text
    assert not re.search(r"""url\(\s*["']?(https?:)?//""", text), "a stylesheet loads from another host"
    hosts = set(re.findall(r"(?:https?:)?//([A-Za-z0-9.\-\[\]:]+)", text.split("<body")[0]))
    assert hosts <= {f"127.0.0.1:{served.port}"}, hosts
    fonts = [ref for ref in statuses if ref.endswith(".ttf")]
    assert fonts, "the page declares no local font"
    assert all(ref.startswith("/static/") and code == 200 for ref, code in statuses.items()), statuses


def test_no_token_is_explicit_and_keeps_the_origin_check(workspace: Path):
    s = start(workspace, "--no-token")
    try:
        assert "token" not in s.url and any("--no-token" in line for line in s.output)
        assert get(s.base + "/")[0] == 200
        assert get(s.base + "/", {"Origin": EVIL})[0] == 403
        assert asyncio.run(_ws_refused(f"ws://127.0.0.1:{s.port}/ws", {"Origin": EVIL}, ["stdin", "s"])) == 403
        assert s.children() == [] and runs_started(workspace) == []
    finally:
        stop(s)
    done = subprocess.run([sys.executable, "-m", "bpllm_tui", "-w", str(workspace), "--serve", "--no-token",
                           "--host", "0.0.0.0", "--port", str(free_port())], cwd=ROOT, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "loopback" in done.stderr
