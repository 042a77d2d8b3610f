"""``python -m bpllm_tui`` (also what ``textual serve`` runs)."""
import sys

from bpllm_tui.app import main

sys.exit(main())
