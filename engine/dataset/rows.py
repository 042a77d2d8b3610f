"""Data foundation: reading, validating, quarantining, deduplicating and splitting rows.

Every training row and every lesson prompt goes through ``dsl/`` (parser +
validator).  What fails goes to ``datasets/quarantine/merge-<source>.jsonl`` with its
diagnostics and the line it came from -- nothing is dropped silently.

Deduplication:
* exact: same normalised instruction and same canonical graph (BLUEPRINT name ignored);
* near-duplicate: same *template fingerprint* -- instruction and canonical graph with
  literal values (numbers, quoted strings) masked -- beyond ``data.near_duplicate_keep``
  rows.  Prompt variations (different wording, same graph) have different instruction
  fingerprints and are kept on purpose.

The split keeps every row of one graph on the same side (so a validation row's
rephrasing is never in train) and is deterministic for a seed.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from dsl import packs
from engine.atomic import atomic_write_json, atomic_write_jsonl
from engine.workspace.safe_paths import id_problem

ROW_FIELDS = ("instruction", "input", "output")
# The longest row (instruction + input + output, in characters) intake accepts; a longer one is
# quarantined with its length. Derived from the largest built-in profile's max_seq_length (2048
# tokens) times 16, the tiny tokenizer's longest piece in characters: no profile could train such a
# row whole, and a single 5 MB row made the tiny tokenizer's training (about quadratic in a text's
# length: 80 k characters 4.4 s, 320 k 94.7 s) run for hours. The real reference corpus peaks at 4.3 k.
MAX_ROW_CHARS = 2048 * 16
GENERATED_ORDER = ("lessons.jsonl", "synthetic.jsonl", "exports.jsonl")


# --------------------------------------------------------------------------- DSL checks
@dataclass
class DslCheck:
    ok: bool
    diagnostics: list[dict[str, Any]]
    canonical: str | None  # format_dsl text (None when it does not parse)

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [d for d in self.diagnostics if d.get("severity") == "error"]


@lru_cache(maxsize=65536)
def check_dsl(text: str, unknown_nodes: str = "error", language: str | None = None) -> DslCheck:
    """Parse + validate + canonicalise one DSL text with a language pack (cached: corpora repeat a lot).
    ``unknown_nodes`` is the workspace's ``[dsl] unknown_nodes`` policy and ``language`` its ``[workspace]
    language`` (``ws.language``; None: the default pack), both passed by the caller: nothing is global."""

    pack = packs.load(language or packs.DEFAULT_LANGUAGE)
    try:
        diags = [d.to_dict() for d in pack.validate(text, unknown_nodes=unknown_nodes)]
    except Exception as exc:  # noqa: BLE001 - a validator bug must not lose the row
        diags = [{"line": 1, "column": 1, "severity": "error", "code": "validator-crash",
                  "message": f"validator raised {type(exc).__name__}: {exc}"}]
    errors = [d for d in diags if d["severity"] == "error"]
    canonical = None
    try:
        canonical = pack.format(text)
    except Exception:  # noqa: BLE001 - ValueError on syntax errors; anything else is the formatter's bug
        canonical = None
    return DslCheck(ok=not errors and canonical is not None, diagnostics=diags, canonical=canonical)


def graph_key(canonical: str) -> str:
    """The canonical form with a label-only header name ignored ("BLUEPRINT: X", "MATERIAL: X": each
    pack's ``anonymous_headers``): leakage and dedup compare this."""
    keys = packs.anonymous_headers()
    return _label_line(keys).sub(lambda m: f"{m.group(1)}: _", canonical).strip() if keys else canonical.strip()


@lru_cache(maxsize=8)
def _label_line(keys: tuple[str, ...]) -> re.Pattern:
    return re.compile(rf"^({'|'.join(map(re.escape, keys))})\s*:.*$", re.M)


_WS = re.compile(r"\s+")
_TRAIL = re.compile(r"[\s.!?]+$")


def norm_instruction(text: str) -> str:
    return _TRAIL.sub("", _WS.sub(" ", text.strip().lower()))


_QUOTED = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?![\w])")


def mask_literals(text: str) -> str:
    return _NUMBER.sub("#", _QUOTED.sub("\"$\"", text))


def template_fingerprint(instruction: str, canonical: str) -> str:
    key = mask_literals(norm_instruction(instruction)) + "\n" + mask_literals(graph_key(canonical))
    return hashlib.sha1(key.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- reading
@dataclass
class Problem:
    source: str
    line: int | None
    reason: str
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    row: Any = None
    kind: str = "invalid"  # invalid | malformed | duplicate | near_duplicate | unsafe_id (would name a path outside)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "line": self.line, "kind": self.kind, "reason": self.reason,
                "diagnostics": self.diagnostics, "row": self.row}

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.reason}"


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(line number, row, error) per non-blank line; a bad line yields (n, None, reason)."""
    with open(path, "rb") as fh:
        for n, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield n, None, f"not UTF-8 (byte {exc.start} of the line); re-save the file as UTF-8"
                continue
            try:
                obj = json.loads(text)
            except ValueError as exc:
                yield n, None, f"not valid JSON ({exc.msg} at column {exc.colno}); each line must be one JSON object"
                continue
            if not isinstance(obj, dict):
                yield n, None, f"a JSON {type(obj).__name__}, expected an object with instruction and output"
                continue
            yield n, obj, None


def too_long(*texts: str, what: str = "instruction + input + output") -> str | None:
    """The quarantine reason for texts longer than MAX_ROW_CHARS together, else None."""
    size = sum(len(t) for t in texts)
    if size <= MAX_ROW_CHARS:
        return None
    return (f"row too long: {size:,} characters in {what} (limit {MAX_ROW_CHARS:,}, engine.dataset.rows.MAX_ROW_CHARS: "
            f"longer than any profile's training sequence); shorten it or split it into several rows")


def check_row(row: dict[str, Any], unknown_nodes: str = "error",
              language: str | None = None) -> tuple[str | None, DslCheck | None]:
    """(reason, check): reason is None for a valid row (``unknown_nodes``, ``language``: see check_dsl)."""
    ins, out = row.get("instruction"), row.get("output")
    if not isinstance(ins, str) or not ins.strip():
        return "missing or empty 'instruction' (a non-empty string is required)", None
    if not isinstance(out, str) or not out.strip():
        return "missing or empty 'output' (the DSL answer, a string, is required)", None
    if "input" in row and row["input"] is not None and not isinstance(row["input"], str):
        return "'input' must be a string when present", None
    long = too_long(ins, row.get("input") or "", out)
    if long:  # before the DSL check: parsing megabytes is slow, and such a row cannot be trained anyway
        return long, None
    chk = check_dsl(out, unknown_nodes, language)
    if not chk.ok:
        errs = chk.errors
        first = errs[0] if errs else {"line": 1, "message": "does not format"}
        more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
        return f"invalid DSL: line {first.get('line')}: {first.get('message')}{more}", chk
    return None, chk


# --------------------------------------------------------------------------- lessons
@dataclass
class Lesson:
    path: Path
    data: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.data.get("lesson_id") or self.path.stem)

    @property
    def prompts(self) -> list[dict[str, Any]]:
        return list(self.data.get("prompts") or [])

    @property
    def holdout(self) -> bool:
        return bool(self.data.get("holdout"))

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.data, sort_keys=True).encode()).hexdigest()[:16]


def load_lesson(path: Path) -> tuple[Lesson | None, list[Problem]]:
    """A lesson file, or None with a message naming file, line and fix."""
    src = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return None, [Problem(src, None, f"not UTF-8 (byte {exc.start}); re-save the lesson as UTF-8", kind="malformed")]
    try:
        data = json.loads(text)
    except ValueError as exc:
        return None, [Problem(src, exc.lineno, f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                                               f"; fix the file (the lesson editor shows the spot)", kind="malformed")]
    problems: list[Problem] = []
    if not isinstance(data, dict):
        return None, [Problem(src, 1, "a lesson must be a JSON object with lesson_id and prompts", kind="malformed")]
    if not isinstance(data.get("prompts"), list):
        return None, [Problem(src, None, "missing 'prompts' list (schema: {lesson_id, lesson_name, description, "
                                         "created, prompts: [{id, category, instruction, expected_dsl}]})",
                              kind="malformed")]
    if not data.get("lesson_id"):
        problems.append(Problem(src, None, f"no 'lesson_id'; using the file name {path.stem!r}", kind="warning"))
    lesson = Lesson(path, data)
    raw = data.get("lesson_id")
    unsafe = id_problem(lesson.id if not raw or isinstance(raw, int) else raw, "lesson_id")
    if unsafe:  # the id names exam and draft files: one with '/' or '..' would write outside the workspace
        return None, [Problem(src, _json_line(text, "lesson_id"), unsafe, kind="unsafe_id")]
    return lesson, problems


def _json_line(text: str, key: str) -> int | None:
    """The line of ``"key":`` in a JSON text (for messages), None when absent."""
    at = text.find(f'"{key}"')
    return text.count("\n", 0, at) + 1 if at >= 0 else None


def check_lesson(lesson: Lesson, unknown_nodes: str = "error",
                 language: str | None = None) -> tuple[list[dict[str, Any]], list[Problem]]:
    """Valid prompts (with canonical gold) and problems for the invalid ones (``unknown_nodes``, ``language``:
    see check_dsl)."""
    good: list[dict[str, Any]] = []
    problems: list[Problem] = []
    seen_ids: set[str] = set()
    for i, p in enumerate(lesson.prompts, 1):
        where = f"{lesson.path}#prompts[{i - 1}]"
        if not isinstance(p, dict):
            problems.append(Problem(where, None, "prompt is not an object", row=p))
            continue
        pid = str(p.get("id") or f"{lesson.id}_{i:02d}")
        unsafe = id_problem(pid, "prompt id")
        if unsafe:  # prompt ids name export files
            problems.append(Problem(where, None, unsafe, row=p, kind="unsafe_id"))
            continue
        if pid in seen_ids:
            problems.append(Problem(where, None, f"duplicate prompt id {pid!r}", row=p))
            continue
        seen_ids.add(pid)
        ins, gold = p.get("instruction"), p.get("expected_dsl")
        if not isinstance(ins, str) or not ins.strip():
            problems.append(Problem(where, None, f"prompt {pid}: missing 'instruction'", row=p))
            continue
        if not isinstance(gold, str) or not gold.strip():
            problems.append(Problem(where, None, f"prompt {pid}: missing 'expected_dsl'", row=p))
            continue
        long = too_long(ins, gold, what="instruction + expected_dsl")
        if long:
            problems.append(Problem(where, None, f"prompt {pid}: {long}", row=p))
            continue
        chk = check_dsl(gold, unknown_nodes, language)
        if not chk.ok:
            first = chk.errors[0] if chk.errors else {"line": 1, "message": "does not format"}
            problems.append(Problem(where, None, f"prompt {pid}: invalid expected_dsl: line {first.get('line')}: "
                                                 f"{first.get('message')}", chk.diagnostics, p))
            continue
        good.append(p | {"id": pid, "_canonical": chk.canonical})
    return good, problems


def load_lessons(paths: list[Path]) -> tuple[list[Lesson], list[Problem]]:
    lessons, problems = [], []
    for p in paths:
        lesson, probs = load_lesson(p)
        problems += probs
        if lesson is not None:
            lessons.append(lesson)
    return lessons, problems


# --------------------------------------------------------------------------- variations
_VARIATION_TEMPLATES = (
    ("create a blueprint that ", ("Make a Blueprint that ", "Build a Blueprint that ", "I need a Blueprint that ")),
    ("create a blueprint ", ("Make a Blueprint ", "Build a Blueprint ", "Write a Blueprint ")),
    ("make a blueprint that ", ("Create a Blueprint that ", "Build a Blueprint that ", "Write a Blueprint that ")),
    ("build a blueprint that ", ("Create a Blueprint that ", "Make a Blueprint that ", "I need a Blueprint that ")),
)


def instruction_variations(instruction: str, n: int, seed: int = 0) -> list[str]:
    """Up to ``n`` rephrasings of an instruction (same meaning), deterministic for a seed."""
    text = instruction.strip()
    low = text.lower()
    out: list[str] = []
    for prefix, alts in _VARIATION_TEMPLATES:
        if low.startswith(prefix):
            rest = text[len(prefix):]
            order = sorted(alts, key=lambda a: hashlib.sha1(f"{seed}:{a}:{text}".encode()).hexdigest())
            out = [a + rest for a in order]
            break
    generic = [f"In Unreal Engine 5, {text[0].lower() + text[1:]}", f"Blueprint DSL please: {text}",
               f"{text.rstrip('.')} Use the standard node catalog."]
    out += generic
    seen = {norm_instruction(text)}
    result = []
    for v in out:
        k = norm_instruction(v)
        if k not in seen:
            seen.add(k)
            result.append(v)
        if len(result) >= n:
            break
    return result


def lesson_rows(lesson: Lesson, prompts: list[dict[str, Any]], variations: int, seed: int) -> list[dict[str, Any]]:
    rows = []
    for p in prompts:
        base = {"input": "", "output": p["expected_dsl"], "source": f"lesson:{lesson.id}", "lesson_id": lesson.id,
                "prompt_id": p["id"], "category": p.get("category")}
        rows.append(base | {"instruction": p["instruction"]})
        for v in instruction_variations(p["instruction"], variations, seed):
            rows.append(base | {"instruction": v, "variation": True})
    return rows


# the reference project marks a lesson row by its source: "lesson:lesson_01:L01_03" (lesson, prompt)
_LESSON_SOURCE = re.compile(r"^lesson:([^:\s]+)(?::([^:\s]+))?$")


def lesson_provenance(row: dict[str, Any]) -> tuple[str, str | None] | None:
    """(lesson_id, prompt_id) a training row came from: its ``lesson_id`` field, else the reference's
    ``source = "lesson:<lesson>:<prompt>"`` mark; None for a row that is not lesson data."""
    if row.get("lesson_id"):
        return str(row["lesson_id"]), (str(row["prompt_id"]) if row.get("prompt_id") else None)
    m = _LESSON_SOURCE.match(str(row.get("source") or ""))
    return (m.group(1), m.group(2)) if m else None


def lesson_share(rows: list[dict[str, Any]]) -> tuple[float, dict[str, int]]:
    """Share of ``rows`` that are lesson data (all lessons together: the reference's "lesson data > 40 %
    of total"), and the rows per lesson."""
    per: dict[str, int] = {}
    for r in rows:
        prov = lesson_provenance(r)
        if prov:
            per[prov[0]] = per.get(prov[0], 0) + 1
    return (sum(per.values()) / len(rows) if rows else 0.0), per


# --------------------------------------------------------------------------- merge
@dataclass
class MergeResult:
    train: list[dict[str, Any]]
    validation: list[dict[str, Any]]
    problems: list[Problem]
    stats: dict[str, Any]


def source_files(ws: Any) -> list[Path]:
    """Datasets merged by step 1.5: sources (yours) first, then what the engine generated."""
    files = sorted(p for p in ws.sources.glob("*.jsonl") if p.is_file()) if ws.sources.is_dir() else []
    for name in GENERATED_ORDER:
        p = ws.generated / name
        if p.exists():
            files.append(p)
    return files


def merge_rows(files: list[Path], *, root: Path, near_keep: int, val_fraction: float, min_val: int, seed: int,
               progress: Any = None, unknown_nodes: str = "error", language: str | None = None) -> MergeResult:
    problems: list[Problem] = []
    kept: list[dict[str, Any]] = []
    dropped: list[tuple[Problem, dict[str, Any], dict[str, Any]]] = []  # near-duplicates, which a call may bring back
    pack = packs.load(language or packs.DEFAULT_LANGUAGE)
    exact: dict[tuple[str, str], str] = {}
    near: dict[str, list[str]] = {}
    stats: dict[str, Any] = {"sources": {}, "rows": 0, "valid": 0, "invalid": 0, "malformed": 0, "duplicates": 0,
                             "near_duplicates": 0}
    total_lines = 0
    for f in files:
        rel = str(f.relative_to(root)) if f.is_relative_to(root) else str(f)
        s = stats["sources"].setdefault(rel, {"rows": 0, "valid": 0, "invalid": 0, "duplicates": 0})
        for n, row, err in read_jsonl(f):
            total_lines += 1
            stats["rows"] += 1
            s["rows"] += 1
            if progress and total_lines % 200 == 0:
                progress(total_lines)
            if row is None:
                stats["malformed"] += 1
                s["invalid"] += 1
                problems.append(Problem(rel, n, err or "malformed", kind="malformed"))
                continue
            reason, chk = check_row(row, unknown_nodes, language)
            if reason is not None:
                stats["invalid"] += 1
                s["invalid"] += 1
                problems.append(Problem(rel, n, reason, chk.diagnostics if chk else [], row))
                continue
            assert chk is not None and chk.canonical is not None
            gkey = graph_key(chk.canonical)
            ekey = (norm_instruction(row["instruction"]), gkey)
            where = f"{rel}:{n}"
            if ekey in exact:
                stats["duplicates"] += 1
                s["duplicates"] += 1
                problems.append(Problem(rel, n, f"exact duplicate of {exact[ekey]}", row=row, kind="duplicate"))
                continue
            fp = template_fingerprint(row["instruction"], chk.canonical)
            bucket = near.setdefault(fp, [])
            out = {"instruction": row["instruction"].strip(), "input": row.get("input") or "",
                   "output": chk.canonical.rstrip()}
            for k in ("category", "pattern", "lesson_id", "prompt_id", "variation", "licence", "repository"):
                if row.get(k) is not None:
                    out[k] = row[k]
            out["source"] = row.get("source") or rel
            out["_group"] = gkey
            if row.get("split") in ("train", "validation"):  # `dataset build` splits by repository
                out["_pin"] = row["split"]
            if near_keep and len(bucket) >= near_keep:
                problem = Problem(rel, n, f"near-duplicate: template {fp} already has {near_keep} rows "
                                          f"({', '.join(bucket[:3])})", row=row, kind="near_duplicate")
                problems.append(problem)
                dropped.append((problem, out, s))
                continue
            exact[ekey] = where
            bucket.append(where)
            kept.append(out)
    back = restore_called(kept, dropped, lambda item: pack.references(
        item["output"] if isinstance(item, dict) else item[1]["output"]))
    for item in back:
        problems.remove(item[0])
        dropped.remove(item)
        kept.append(item[1])
    for _problem, _out, s in dropped:
        s["duplicates"] += 1
    stats["near_duplicates"] = len(dropped)
    stats["valid"] = len(kept)
    for s in stats["sources"].values():
        s["valid"] = s["rows"] - s["invalid"] - s["duplicates"]
    train, val = split_rows(kept, val_fraction, min_val, seed)
    for r in train + val:
        r.pop("_group", None)
        r.pop("_pin", None)
    stats["train"], stats["validation"] = len(train), len(val)
    stats["quarantined"] = stats["invalid"] + stats["malformed"]
    return MergeResult(train, val, problems, stats)


def restore_called(kept: list[Any], dropped: list[Any], refs: Callable[[Any], tuple[str | None, Iterable[str]]],
                   scope: Callable[[Any], Any] = lambda _x: None) -> list[Any]:
    """The DROPPED items (duplicates) to bring back because a kept item calls the name one defines and no
    kept item of the same SCOPE defines it (a node group a material uses): without them the caller could
    not be built. ``refs(item)`` is (the name it defines or None, the names it calls). Transitive: a
    restored item's own calls count too. Returns them in order; nothing is computed for the kept items
    when no dropped item defines a name."""
    pending = [(d, ref) for d in dropped if (ref := refs(d))[0] is not None]
    if not pending:
        return []
    kept_refs = [(scope(k), refs(k)) for k in kept]
    have = {(sc, name) for sc, (name, _c) in kept_refs if name is not None}
    wanted = {(sc, c) for sc, (_n, cs) in kept_refs for c in cs}
    back: list[Any] = []
    changed = True
    while changed:
        changed = False
        for item in list(pending):
            d, (name, cs) = item
            key = (scope(d), name)
            if key not in wanted or key in have:
                continue
            pending.remove(item)
            back.append(d)
            have.add(key)
            wanted |= {(scope(d), c) for c in cs}
            changed = True
    return back


def split_rows(rows: list[dict[str, Any]], fraction: float, min_val: int, seed: int) -> tuple[list, list]:
    """Group-aware deterministic split: all rows of one graph land on the same side. Rows pinned to a side
    (``_pin``: `dataset build` split them by repository) stay there while there is a validation split."""
    if not rows or fraction <= 0:
        return rows, []
    pinned = [r for r in rows if r.get("_pin")]
    if pinned:
        train, val = split_rows([r for r in rows if not r.get("_pin")], fraction, min_val, seed)
        return (train + [r for r in pinned if r["_pin"] == "train"],
                val + [r for r in pinned if r["_pin"] == "validation"])
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(r["_group"], []).append(r)
    if len(groups) < 4:
        return rows, []  # too little data to hold any out honestly
    target = max(min_val, round(len(rows) * fraction))
    order = sorted(groups, key=lambda g: hashlib.sha256(f"{seed}:{g}".encode()).hexdigest())
    val_groups: set[str] = set()
    count = 0
    for g in order:
        if count >= target or len(val_groups) >= len(groups) - 1:
            break
        val_groups.add(g)
        count += len(groups[g])
    train = [r for r in rows if r["_group"] not in val_groups]
    val = [r for r in rows if r["_group"] in val_groups]
    return train, val


def write_quarantine(qdir: Path, problems: list[Problem], *, prefix: str = "") -> dict[str, Path]:
    """``<prefix><source>.jsonl`` per source (invalid/malformed) plus ``<prefix>duplicates.jsonl``, rewritten
    atomically; stale files of the same prefix (a source that is clean now) are removed, others never."""
    by_file: dict[str, list[dict[str, Any]]] = {}
    for p in problems:
        if p.kind == "warning":
            continue
        name = "duplicates" if p.kind in ("duplicate", "near_duplicate") else _safe_name(p.source)
        by_file.setdefault(prefix + name, []).append(p.to_dict())
    out = {}
    qdir.mkdir(parents=True, exist_ok=True)
    for old in qdir.glob(f"{prefix}*.jsonl"):
        if old.stem not in by_file:
            old.unlink()
    for name, rows in by_file.items():
        path = qdir / f"{name}.jsonl"
        atomic_write_jsonl(path, rows)
        out[name] = path
    return out


def _safe_name(source: str) -> str:
    stem = Path(source.split("#")[0]).stem or "source"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem)


def data_hash(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.name.encode() + b"\0")
        if p.exists():
            h.update(p.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:16]


def write_split(ws: Any, result: MergeResult) -> None:
    atomic_write_jsonl(ws.train_path, result.train)
    atomic_write_jsonl(ws.validation_path, result.validation)
    atomic_write_json(ws.datasets / "manifest.json", result.stats)
