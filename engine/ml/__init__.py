"""The engine's ML core: profiles, the tiny base, LoRA training, exams, grading, health.

Nothing here imports Textual; torch and friends are imported inside the modules
that need them so ``bpllm --help`` and the TUI stay fast.
"""
