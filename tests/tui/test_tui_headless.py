"""bpllm-tui must never load the ML stack: the engine subprocess owns it, and the app paints in < 1 s."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ["torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate"]


def test_app_and_every_screen_import_without_the_ml_stack():
    code = "\n".join([
        "import sys",
        "import bpllm_tui.app, bpllm_tui.bench",
        "import bpllm_tui.screens.editor, bpllm_tui.screens.review, bpllm_tui.screens.history",
        "from pathlib import Path",
        "app = bpllm_tui.app.BpllmApp(Path('.'), attach=False)",
        f"print(sorted(set({FORBIDDEN!r}) & set(sys.modules)))",
    ])
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
