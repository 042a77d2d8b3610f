"""The engine's ML core: profiles, the tiny base, LoRA training, exams, grading, health.

Nothing here imports Textual; torch and friends are imported inside the modules
that need them so ``bpllm --help`` and the TUI stay fast.
"""
import logging as _logging

# bitsandbytes logs, at import time, that an optional 4-bit CPU kernel package is not installed: it is
# irrelevant to every profile here, and a warning line on stderr each run would read like a fault
_logging.getLogger("bitsandbytes").setLevel(_logging.ERROR)
