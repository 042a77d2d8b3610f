"""Browser access: ``bpllm-tui --serve`` runs the same app behind textual-serve on localhost.

Each browser tab starts its own ``bpllm-tui`` process (attached to the same workspace, like a
second terminal would be), so closing a tab never stops the engine. The server binds to
127.0.0.1 unless told otherwise: reach it from another machine through an SSH tunnel
(``ssh -L 8000:localhost:8000 rig``), not by opening the port.
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path


def serve_command(workspace: Path, extra: list[str]) -> str:
    return shlex.join([sys.executable, "-m", "bpllm_tui", "-w", str(workspace.resolve()), *extra])


def serve(workspace: Path, host: str = "127.0.0.1", port: int = 8000, extra: list[str] | None = None) -> int:
    try:
        from textual_serve.server import Server
    except ImportError:
        print("bpllm-tui --serve needs textual-serve: pip install 'textual-serve==1.1.3'", file=sys.stderr)
        return 1
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {host}: anyone who can reach this port can drive the engine", file=sys.stderr)
    server = Server(serve_command(workspace, extra or []), host=host, port=port, title="bpllm")
    server.serve()
    return 0
