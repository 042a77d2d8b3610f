"""`bpllm dataset export`: the workspace's training rows as fine-tuning files for hosted providers and trl.

The rows are the ones the engine trains on: ``datasets/train.jsonl`` / ``validation.jsonl`` as step
1.5 wrote them; on a workspace where step 1 has not run yet, the same merge (engine.dataset.rows.
merge_rows over the same source files, same config) is done in memory and nothing in the workspace
changes. ``test`` is what the exam asks that training never sees: the prompts of the held-out lessons
(``"holdout": true``, which ``bpllm dataset build`` writes from its test split) and of every other
lesson not integrated into training yet. The user turn is built exactly as training builds it
(engine.ml.train.to_conversation: instruction, a blank line, then the input when there is one); the
system prompt is the workspace's (``[data] system_prompt``).

Rows are language-agnostic text, so the same code exports Blueprint and Blender-material workspaces.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable

from dsl.config import EXPORT_FORMATS
from dsl.errors import BpllmError
from engine.atomic import atomic_write_text
from engine.dataset.rows import check_lesson, load_lessons, merge_rows, read_jsonl, source_files
from engine.workspace.history import History

FORMATS = EXPORT_FORMATS  # one list: [sources] export_formats is checked against it too
SPLITS = ("train", "val", "test")
CHARS_PER_TOKEN = 4  # the stated approximation when no tokenizer is given


class ExportError(BpllmError):
    """A refusal with one line that names the file and the fix."""


# --------------------------------------------------------------------------- shapes
def user_text(row: dict[str, Any]) -> str:
    """The user turn as training builds it (engine.ml.train.to_conversation)."""
    text = str(row.get("instruction") or "")
    if row.get("input"):
        text = f"{text}\n\n{row['input']}"
    return text


def to_openai(row: dict[str, Any], system: str) -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user_text(row)},
                         {"role": "assistant", "content": row["output"]}]}


def to_anthropic(row: dict[str, Any], system: str) -> dict[str, Any]:
    """Anthropic fine-tuning on Amazon Bedrock: the system prompt beside the messages, not among them."""
    return {"system": system, "messages": [{"role": "user", "content": user_text(row)},
                                           {"role": "assistant", "content": row["output"]}]}


def to_hf_chat(row: dict[str, Any], system: str) -> dict[str, Any]:
    """trl's conversational prompt/completion (the prompt is masked out of the loss)."""
    return {"prompt": [{"role": "system", "content": system}, {"role": "user", "content": user_text(row)}],
            "completion": [{"role": "assistant", "content": row["output"]}]}


def to_alpaca(row: dict[str, Any], system: str) -> dict[str, Any]:
    """Alpaca has no system field: a trainer adds its own preamble, so the system prompt is not repeated."""
    return {"instruction": str(row.get("instruction") or ""), "input": str(row.get("input") or ""),
            "output": row["output"]}


SHAPERS: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
    "openai": to_openai, "anthropic": to_anthropic, "hf-chat": to_hf_chat, "alpaca": to_alpaca}


def messages_of(row: dict[str, Any], system: str) -> list[dict[str, str]]:
    """The full conversation (for token counts, whatever the format)."""
    return to_openai(row, system)["messages"]


# --------------------------------------------------------------------------- rows
def system_prompt(ws: Any) -> str:
    """The workspace's system prompt, stripped as the training and exam steps strip it."""
    path = ws.system_prompt_path
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ExportError(f"system prompt {path} not found; restore it or set [data] system_prompt in "
                          f"{ws.config_path}") from None
    except UnicodeDecodeError as exc:
        raise ExportError(f"system prompt {path} is not UTF-8 (byte {exc.start}); re-save it as UTF-8") from None
    if not text:
        raise ExportError(f"system prompt {path} is empty; write one (every exported row carries it)")
    return text


def _read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, row, err in read_jsonl(path):
        if row is None:
            raise ExportError(f"{path}:{n}: {err}; rebuild it with `bpllm run --only 1`")
        if not isinstance(row.get("output"), str):
            raise ExportError(f"{path}:{n}: no 'output' string; rebuild it with `bpllm run --only 1`")
        rows.append(row)
    return rows


def training_rows(ws: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    """(train, validation, where they came from): the merged split, or the same merge done in memory."""
    if ws.train_path.exists():
        val = _read_rows(ws.validation_path) if ws.validation_path.exists() else []
        return _read_rows(ws.train_path), val, f"{ws.train_path.relative_to(ws.root)} (step 1.5)"

    files = source_files(ws)
    if not files:
        raise ExportError(f"no training rows: {ws.train_path} does not exist and {ws.sources} has no JSONL; "
                          f"add rows (`bpllm dataset build`, `bpllm import-blueprintllm`) or run `bpllm run --only 1`")
    d = ws.config.data
    res = merge_rows(files, root=ws.root, near_keep=d.near_duplicate_keep, val_fraction=d.validation_fraction,
                     min_val=d.min_validation, seed=d.seed, unknown_nodes=ws.config.dsl.unknown_nodes,
                     language=ws.language)
    names = ", ".join(str(f.relative_to(ws.root)) for f in files)
    return res.train, res.validation, (f"merged in memory from {names} as step 1.5 would ({ws.train_path.name} "
                                       f"is not built yet; `bpllm run --only 1` also adds the synthetic rows)")


def test_rows(ws: Any) -> tuple[list[dict[str, Any]], str]:
    """Exam prompts no training row comes from: held-out lessons, and lessons not integrated yet."""

    integrated: set[str] = set()
    if ws.history_path.exists():
        hist = History(ws.history_path, readonly=True)
        try:
            integrated = set(hist.integrated_lessons())
        finally:
            hist.close()
    lessons, _problems = load_lessons(ws.lesson_files())
    if ws.config.data.integrate == "all":  # step 1.4 trains on every lesson that is not held out
        integrated |= {lesson.id for lesson in lessons}
    rows, used = [], []
    for lesson in lessons:
        if lesson.data.get("status") == "draft" or (lesson.id in integrated and not lesson.holdout):
            continue
        good, _bad = check_lesson(lesson, ws.config.dsl.unknown_nodes, ws.language)
        used.append(lesson.id + (" (held out)" if lesson.holdout else ""))
        rows += [{"instruction": p["instruction"], "input": "", "output": p["expected_dsl"],
                  "source": f"lesson:{lesson.id}:{p['id']}"} for p in good]
    if not rows:
        raise ExportError(f"no test rows: every lesson in {ws.lessons} is integrated into training; `bpllm dataset "
                          f"build` writes a held-out lesson, or mark one with \"holdout\": true")
    return rows, "exam prompts of lessons not in training: " + ", ".join(used)


def select(ws: Any, split: str) -> tuple[list[dict[str, Any]], str]:
    if split == "test":
        return test_rows(ws)
    train, val, where = training_rows(ws)
    return (train if split == "train" else val), where


# --------------------------------------------------------------------------- tokens
class Counter:
    """Tokens of a whole conversation: the model's tokenizer (its chat template when it has one), else
    characters / CHARS_PER_TOKEN, rounded up, and ``method`` says which."""

    def __init__(self, tokenizer: Any = None, name: str = ""):
        self.tok = tokenizer
        self.templated = bool(tokenizer is not None and getattr(tokenizer, "chat_template", None))
        if tokenizer is None:
            self.method = f"approximation: characters / {CHARS_PER_TOKEN}; pass --tokenizer for exact counts"
        else:
            self.method = f"tokenizer {name}" + (" with its chat template" if self.templated
                                                 else " (message texts only: it has no chat template)")

    def _encode(self, text: str) -> int:
        if hasattr(self.tok, "encode") and not hasattr(self.tok, "apply_chat_template"):
            return len(self.tok.encode(text, add_special_tokens=False).ids)  # a bare tokenizers.Tokenizer
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def count(self, messages: list[dict[str, str]]) -> int:
        if self.tok is None:
            return -(-sum(len(m["content"]) for m in messages) // CHARS_PER_TOKEN)
        if self.templated:
            return self._encode(self.tok.apply_chat_template(messages, tokenize=False))
        return sum(self._encode(m["content"]) for m in messages)


def load_counter(ws: Any, spec: str | None) -> Counter:
    """A workspace model version (``v3``, ``latest``, ``base``) or a tokenizer path (a folder, or a
    tokenizer.json); the ML stack is imported only here."""
    if not spec:
        return Counter()
    path = _tokenizer_path(ws, spec)
    if path.is_file():
        from tokenizers import Tokenizer

        try:
            return Counter(Tokenizer.from_file(str(path)), str(path))
        except Exception as exc:  # noqa: BLE001 - reported as one line naming the file
            raise ExportError(f"--tokenizer {path}: not a tokenizers JSON file ({exc})") from None
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - reported as one line naming the folder
        raise ExportError(f"--tokenizer {path}: no tokenizer could be loaded ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''}); pass a folder with tokenizer.json "
                          f"or a version under {ws.models}") from None
    return Counter(tok, spec)


def _versions(ws: Any) -> list[Path]:
    found = [p for p in ws.models.glob("v*") if p.is_dir() and p.name[1:].isdigit()] if ws.models.is_dir() else []
    return sorted(found, key=lambda p: int(p.name[1:]))


def _tokenizer_path(ws: Any, spec: str) -> Path:
    if spec == "latest":
        versions = [v for v in _versions(ws) if _tokenizer_dir(v)]
        if not versions:
            raise ExportError(f"--tokenizer latest: no model version with a tokenizer under {ws.models}; "
                              f"train one (`bpllm run`) or pass a tokenizer path")
        return _tokenizer_dir(versions[-1])  # type: ignore[return-value]
    as_version = ws.models / spec
    if "/" not in spec and as_version.is_dir():
        found = _tokenizer_dir(as_version)
        if found is None:
            raise ExportError(f"--tokenizer {spec}: {as_version} holds no tokenizer (tokenizer.json)")
        return found
    path = Path(spec).expanduser()
    if not path.exists():
        raise ExportError(f"--tokenizer {spec}: neither a model version under {ws.models} nor an existing path")
    return path


def _tokenizer_dir(root: Path) -> Path | None:
    """The folder holding tokenizer.json: the version's adapter (saved with it), else the folder, else any."""
    for cand in (root / "adapter", root):
        if (cand / "tokenizer.json").exists() or (cand / "tokenizer_config.json").exists():
            return cand
    hits = sorted(root.rglob("tokenizer.json"))
    return hits[0].parent if hits else None


# --------------------------------------------------------------------------- export
def export(ws: Any, fmt: str, out: Path, split: str = "train", tokenizer: str | None = None,
           rows: Iterable[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write ``out`` atomically; returns the report (counts, tokens and how they were counted)."""

    if fmt not in SHAPERS:
        raise ExportError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    if split not in SPLITS:
        raise ExportError(f"unknown split {split!r}; one of {', '.join(SPLITS)}")
    system = system_prompt(ws)
    if rows is None:
        chosen, where = select(ws, split)
    else:
        chosen, where = list(rows), "given rows"
    counter = load_counter(ws, tokenizer)
    shape = SHAPERS[fmt]
    lines, tokens = [], []
    for row in chosen:
        lines.append(json.dumps(shape(row, system), ensure_ascii=False))
        tokens.append(counter.count(messages_of(row, system)))
    out = Path(out)
    atomic_write_text(out, "".join(line + "\n" for line in lines))
    return {"format": fmt, "split": split, "out": str(out), "rows": len(lines), "from": where,
            "tokens": {"total": sum(tokens), "max": max(tokens, default=0),
                       "mean": round(sum(tokens) / len(tokens), 1) if tokens else 0.0, "method": counter.method},
            "system_prompt": str(ws.system_prompt_path)}
