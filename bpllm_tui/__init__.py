"""bpllm-tui: the Textual control room (never imports the ML stack)."""
