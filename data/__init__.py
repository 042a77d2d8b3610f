"""Starter data shipped with bpllm (catalog, starter lessons, system prompt)."""
