"""`bpllm validate | score | fmt` — the DSL's command-line contract.

Other tools parse the ``--json`` output, so its shape is part of the contract:

* validate: ``{"files":[{"path","items":[{"id","valid","diagnostics":[{line,column,end_line,end_column,severity,code,message}]}]}]}``
  (lines 1-based within each DSL text); exit 1 when any error.
* score: ``{"score","precision","recall","line_score","buckets":{...}}``; with ``--exam`` a
  ``{"records":[{"prompt_id", ...same fields...}], "mean_score", "mean_line_score", "scored",
  "missing":[{"prompt_id","line"}], "skipped"}`` roll-up (a row with no ``actual_dsl`` is missing, not a 0).
* fmt: rewrites files in canonical form (atomically); ``--check`` only reports, exit 1 if any would change.

Each text is read in its language: ``--language NAME``, else the pack whose header the text starts
with (``BLUEPRINT:`` ...), else the workspace's ``[workspace] language``, else Blueprint.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .ast import Diagnostic
from .atomic import atomic_write_text
from .errors import BpllmError


@dataclass(slots=True)
class DslItem:
    """One DSL text inside a file: a whole .dsl file, a lesson prompt, or a dataset row."""

    id: str
    text: str | None
    problem: Diagnostic | None = None  # the container itself was unreadable (bad JSON row, missing field)
    extra: dict[str, Any] = field(default_factory=dict)


class InputError(BpllmError):
    """A file that cannot be read at all; the message names file, line and fix."""


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory; pass .dsl, lesson .json or dataset .jsonl files") from None


def _read_text(path: Path) -> str:
    data = _read_bytes(path)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not UTF-8 (byte 0x{data[exc.start]:02x}); re-save the file as UTF-8") from None


def _jsonl_lines(path: Path) -> Iterator[tuple[int, str | None, str]]:
    """(line number, text or None, why) per line: one binary line must not hide every other row."""
    data = _read_bytes(path)
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            yield number, raw.decode("utf-8"), ""
        except UnicodeDecodeError as exc:
            yield number, None, f"not UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"


def iter_items(path: Path) -> Iterator[DslItem]:
    """The DSL texts a file holds, by file kind (.dsl / lesson .json / dataset .jsonl)."""
    suffix = path.suffix.lower()
    text = _read_text(path) if suffix != ".jsonl" else ""
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{exc.lineno}:{exc.colno}: invalid JSON ({exc.msg}); fix the JSON syntax there") from None
        prompts = data.get("prompts") if isinstance(data, dict) else None
        if not isinstance(prompts, list):
            raise InputError(f"{path}: a lesson file needs a 'prompts' list of {{id, instruction, expected_dsl}}")
        for index, prompt in enumerate(prompts):
            pid = str(prompt.get("id", f"prompt[{index}]")) if isinstance(prompt, dict) else f"prompt[{index}]"
            dsl = prompt.get("expected_dsl") if isinstance(prompt, dict) else None
            if not isinstance(dsl, str):
                yield DslItem(pid, None, Diagnostic(1, 1, 1, 2, "error", "missing-field",
                                                    f"{path}: prompt {pid} has no 'expected_dsl' string; add the gold DSL"))
            else:
                yield DslItem(pid, dsl)
        return
    if suffix == ".jsonl":
        for number, line, why in _jsonl_lines(path):
            rid = f"line {number}"
            if line is None:
                yield DslItem(rid, None, Diagnostic(1, 1, 1, 2, "error", "not-utf8",
                                                    f"{path}:{number}: {why}; re-save the row as UTF-8 or remove the line"))
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield DslItem(rid, None, Diagnostic(1, 1, 1, 2, "error", "bad-json",
                                                    f"{path}:{number}: invalid JSON ({exc.msg} at column {exc.colno}); fix or remove the line"))
                continue
            if not isinstance(row, dict):
                yield DslItem(rid, None, Diagnostic(1, 1, 1, 2, "error", "bad-row", f"{path}:{number}: a row must be a JSON object"))
                continue
            if row.get("prompt_id") or row.get("id"):
                rid = f"{row.get('prompt_id') or row.get('id')} (line {number})"
            dsl = row.get("output", row.get("expected_dsl"))
            if not isinstance(dsl, str):
                yield DslItem(rid, None, Diagnostic(1, 1, 1, 2, "error", "missing-field",
                                                    f"{path}:{number}: row has no 'output' or 'expected_dsl' string"))
                continue
            yield DslItem(rid, dsl)
        return
    yield DslItem(str(path), text)


def _workspace_setting(section: str, key: str, default: str) -> str:
    """A setting of the workspace in $BPLLM_WORKSPACE or the current directory, else DEFAULT:
    ``[dsl] unknown_nodes = "warning"`` allows unknown node types, ``[workspace] language`` names the pack.

    The file is read by the one loader (dsl.config, which the engine and the TUI use too), so a bad
    setting is an error here too (ConfigError), never a silent fallback to the default.
    """
    from .config import CONFIG_FILE, load_config  # stdlib only: keeps `bpllm validate` light

    config = Path(os.environ.get("BPLLM_WORKSPACE", ".")) / CONFIG_FILE
    if not config.is_file():
        return default
    return str(getattr(getattr(load_config(config), section), key) or default)


def _workspace_unknown_nodes(default: str = "error") -> str:
    return _workspace_setting("dsl", "unknown_nodes", default)


class _Languages:
    """Picks each text's pack: --language, else its header, else the workspace's language."""

    def __init__(self, forced: str | None):
        from . import packs

        self.packs = packs
        self.forced = packs.load(forced) if forced else None  # UnknownLanguage: the caller reports it
        self._fallback = None

    def for_text(self, text: str):
        if self.forced is not None:
            return self.forced
        for pack in self.packs.all_packs():
            if pack.detect(text):
                return pack
        if self._fallback is None:
            self._fallback = self.packs.load(_workspace_setting("workspace", "language", self.packs.DEFAULT_LANGUAGE))
        return self._fallback


def _languages(command: str, args: argparse.Namespace) -> "_Languages | None":
    """The language picker, or None after one clear line for an unknown --language."""
    from .packs import UnknownLanguage

    try:
        return _Languages(getattr(args, "language", None))
    except UnknownLanguage as exc:
        print(f"bpllm {command}: {exc}; see `bpllm languages`", file=sys.stderr)
        return None


def cmd_validate(args: argparse.Namespace) -> int:
    from .catalog import default_catalog, load_catalog_file
    from .validator import validate

    catalog = load_catalog_file(args.catalog) if args.catalog else default_catalog()
    langs = _languages("validate", args)
    if langs is None:
        return 1
    unknown = args.unknown_nodes or _workspace_unknown_nodes()  # ConfigError: engine.cli.main reports it
    langs.for_text("")  # reads the workspace's language now (a bad one: engine.cli.main reports it)
    report: dict[str, Any] = {"files": []}
    any_error = False
    totals = {"items": 0, "invalid": 0, "errors": 0, "warnings": 0}
    pending: list[tuple[dict[str, Any], str, str]] = []  # (report item, text, where) for --in-blender
    for raw in args.paths:
        path = Path(raw)
        entry: dict[str, Any] = {"path": str(path), "items": []}
        report["files"].append(entry)
        try:
            items = list(iter_items(path))
        except InputError as exc:
            any_error = True
            entry["error"] = str(exc)
            if not args.json:
                print(f"error: {exc}", file=sys.stderr)
            continue
        # compiler style: path:line:col for a one-text .dsl file; path:item:line:col in multi-item files
        multi = path.suffix.lower() in (".json", ".jsonl")
        for item in items:
            totals["items"] += 1
            if item.problem is not None:
                diags = [item.problem]
            elif args.catalog:  # a Blueprint catalog of one's own
                diags = validate(item.text or "", catalog, unknown_nodes=unknown)
            else:
                diags = langs.for_text(item.text or "").validate(item.text or "", unknown_nodes=unknown)
            errors = [d for d in diags if d.severity == "error"]
            totals["errors"] += len(errors)
            totals["warnings"] += sum(1 for d in diags if d.severity == "warning")
            if errors:
                any_error = True
                totals["invalid"] += 1
            entry["items"].append({"id": item.id, "valid": not errors, "diagnostics": [d.to_dict() for d in diags]})
            if args.in_blender and item.text is not None and not errors:
                pending.append((entry["items"][-1], item.text, f"{path}:{item.id}" if multi else f"{path}"))
            if not args.json:
                shown = diags if args.warnings else errors
                for d in shown:
                    where = f"{path}:{item.id}" if multi else f"{path}"
                    print(f"{where}:{d.line}:{d.column}: {d.severity} [{d.code}] {d.message}")
    if args.in_blender:
        if not _in_blender(args, pending, totals):
            return 1
        any_error = any_error or totals["blender_errors"] > 0
    if args.json:
        json.dump(report, sys.stdout, indent=None if args.compact else 1)
        sys.stdout.write("\n")
    else:
        print(
            f"{totals['items']} text(s) in {len(args.paths)} file(s): {totals['items'] - totals['invalid']} valid, "
            f"{totals['invalid']} invalid, {totals['errors']} error(s), {totals['warnings']} warning(s)",
            file=sys.stderr,
        )
    return 1 if any_error else 0


def _in_blender(args: argparse.Namespace, pending: list[tuple[dict[str, Any], str, str]],
                totals: dict[str, int]) -> bool:
    """--in-blender: build the material texts that passed the catalog checks in Blender, all
    together (materials find the groups they use), and add Blender's verdict as diagnostics.
    False (after one line on how to install it) when bpy is missing."""
    from .packs.blender_material.blend import INSTALL_HINT  # noqa: PLC0415 - bpy itself stays lazy
    from .packs.blender_material.cli import in_blender_diagnostics  # noqa: PLC0415
    from .packs.blender_material.text import HEADER_KEYS  # noqa: PLC0415

    mats = [(item, text, where) for item, text, where in pending
            if text.lstrip().split(":", 1)[0].strip() in HEADER_KEYS]
    verdicts = in_blender_diagnostics([text for _i, text, _w in mats])
    if verdicts is None:
        print(f"bpllm validate --in-blender: Blender (the bpy module) is not installed; {INSTALL_HINT}",
              file=sys.stderr)
        return False
    totals["blender_errors"] = 0
    for (item, _text, where), diags in zip(mats, verdicts):
        if diags:
            item["valid"] = False
            item["diagnostics"].extend(d.to_dict() for d in diags)
            totals["invalid"] += 1
            totals["errors"] += len(diags)
            totals["blender_errors"] += len(diags)
        if not args.json:
            for d in diags:
                print(f"{where}:{d.line}:{d.column}: {d.severity} [{d.code}] {d.message}")
    if not args.json:
        print(f"Blender built {len(mats)} material text(s): {sum(1 for v in verdicts if not v)} accepted",
              file=sys.stderr)
    return True


def _score_fields(result: Any) -> dict[str, Any]:
    data = result.to_dict()
    return {
        "score": data["score"],
        "precision": data["precision"],
        "recall": data["recall"],
        "line_score": data["line_score"],
        "buckets": data["buckets"],
        "mapping": data["mapping"],
    }


def cmd_score(args: argparse.Namespace) -> int:
    langs = _languages("score", args)
    if langs is None:
        return 1

    def score(expected: str, actual: str):
        return langs.for_text(expected).score(expected, actual)

    if args.exam:
        path = Path(args.exam)
        text = _read_text(path)  # InputError: engine.cli.main reports it
        records = []
        missing: list[dict[str, Any]] = []  # rows with no answer: reported, never averaged in as 0
        problems = 0
        for number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                expected, actual = row["expected_dsl"], row.get("actual_dsl")
                if not isinstance(expected, str) or not (actual is None or isinstance(actual, str)):
                    raise TypeError("expected_dsl/actual_dsl must be strings")
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                problems += 1
                print(f"{path}:{number}: skipped: {exc}; each line needs prompt_id, expected_dsl, actual_dsl", file=sys.stderr)
                continue
            prompt_id = row.get("prompt_id", f"line {number}")
            if actual is None:
                missing.append({"prompt_id": prompt_id, "line": number})
                print(f"{path}:{number}: warning: {prompt_id} has no actual_dsl; reported as missing, not scored "
                      "(a model answer of \"\" would score 0)", file=sys.stderr)
                continue
            result = score(expected, actual)
            records.append({"prompt_id": prompt_id, **_score_fields(result)})
        mean = sum(r["score"] for r in records) / len(records) if records else 0.0
        mean_line = sum(r["line_score"] for r in records) / len(records) if records else 0.0
        if args.json:
            json.dump({"records": records, "mean_score": round(mean, 4), "mean_line_score": round(mean_line, 4),
                       "scored": len(records), "missing": missing, "skipped": problems}, sys.stdout)
            sys.stdout.write("\n")
        else:
            for r in records:
                print(f"{r['prompt_id']:<12} score {r['score']:.3f}  P {r['precision']:.3f}  R {r['recall']:.3f}  line {r['line_score']:.3f}")
            print(f"{len(records)} record(s): mean score {mean:.4f}, mean line score {mean_line:.4f}"
                  + (f"; {len(missing)} missing (no actual_dsl, not in the mean)" if missing else ""))
        return 1 if problems else 0
    if len(args.files) != 2:
        print("error: bpllm score needs EXPECTED.dsl ACTUAL.dsl (or --exam FILE.jsonl)", file=sys.stderr)
        return 1
    expected, actual = (_read_text(Path(p)) for p in args.files)  # InputError: engine.cli.main reports it
    result = score(expected, actual)
    if args.json:
        json.dump(_score_fields(result), sys.stdout)
        sys.stdout.write("\n")
    else:
        print(f"score {result.score:.4f}  precision {result.precision:.4f}  recall {result.recall:.4f}  "
              f"line score {result.line_score:.4f}  ({result.matched}/{result.expected_total} expected, "
              f"{result.actual_total} actual)")
        for bucket, entries in result.buckets.items():
            for e in entries:
                where = f"expected:{e['expected_line'] or '-'} actual:{e['actual_line'] or '-'}"
                print(f"  {bucket:<14} {where:<22} {e['text']}")
    return 0


def cmd_fmt(args: argparse.Namespace) -> int:
    from .formatter import FormatError

    langs = _languages("fmt", args)
    if langs is None:
        return 1

    def format_dsl(text: str) -> str:
        return langs.for_text(text).format(text)

    if args.paths == ["-"]:
        try:
            sys.stdout.write(format_dsl(sys.stdin.read()))
        except FormatError as exc:
            print(f"<stdin>: {exc}", file=sys.stderr)
            return 1
        return 0
    status = 0
    for raw in args.paths:
        path = Path(raw)
        try:
            text = _read_text(path)
            formatted = format_dsl(text)
        except (InputError, FormatError) as exc:
            print(f"{path}: {exc}" if isinstance(exc, FormatError) else f"error: {exc}", file=sys.stderr)
            status = 1
            continue
        if formatted == text:
            continue
        if args.check:
            print(f"would reformat {path}")
            status = 1
        else:
            atomic_write_text(path, formatted)
            print(f"reformatted {path}")
    return status


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="validate DSL texts (.dsl, lesson .json, dataset .jsonl)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.add_argument("--compact", action="store_true", help="one-line JSON")
    p.add_argument("--warnings", action="store_true", help="also print warnings in the text report")
    p.add_argument("--unknown-nodes", choices=("error", "warning"), default=None,
                   help="how to treat node types missing from the catalog (default: workspace setting, else error)")
    p.add_argument("--catalog", help="a Blueprint catalog JSON other than the shipped one")
    p.add_argument("--in-blender", action="store_true",
                   help="also build Blender material texts in Blender (bpy) and report what it rejects")
    _language_arg(p)
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("score", help="structural score of ACTUAL against EXPECTED (or rescore an exam file)")
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--exam", metavar="FILE.jsonl", help="rescore every record (prompt_id, expected_dsl, actual_dsl)")
    p.add_argument("--json", action="store_true")
    _language_arg(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("fmt", help="rewrite .dsl files in canonical form ('-' for stdin → stdout)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--check", action="store_true", help="only report files that would change (exit 1)")
    _language_arg(p)
    p.set_defaults(func=cmd_fmt)


def _language_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--language", metavar="NAME",
                   help="the language of the texts (default: from each text's header, else the workspace's)")
