"""Atomic state-file writes for the engine (the implementation lives in :mod:`dsl.atomic`,
the lowest layer, so the DSL tools, the engine and the TUI share one)."""
from dsl.atomic import (  # noqa: F401
    TMP_SUFFIX,
    _json_default,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_jsonl,
    atomic_write_text,
    clean_temp_files,
    read_json,
    sha256_file,
)
