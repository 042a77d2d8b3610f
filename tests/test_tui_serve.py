"""`bpllm-tui --serve` answers a browser on localhost (needs the optional textual-serve package)."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_binds_localhost_and_serves_the_page(tmp_path):
    pytest.importorskip("textual_serve", reason="textual-serve not installed (pip install 'textual-serve==1.1.3')")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bpllm_tui", "-w", str(tmp_path), "--serve", "--port", str(port)],
                            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        body = ""
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as response:
                    body = response.read().decode("utf-8", "replace")
                    assert response.status == 200
                    break
            except OSError:
                time.sleep(0.2)
        assert "bpllm" in body and "textual" in body.lower()
        # not reachable on a non-loopback address of this host
        addresses = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
        for address in addresses - {"127.0.0.1"}:
            with socket.socket() as s:
                s.settimeout(1)
                assert s.connect_ex((address, port)) != 0, f"--serve must bind to localhost only, not {address}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
