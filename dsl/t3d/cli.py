"""`bpllm import-t3d` and `bpllm export-t3d`: Unreal clipboard text ⇄ Blueprint DSL.

``import-t3d FILE... [--out DIR] [--json] [--training-row]`` turns editor copies into
DSL and reports, per file, what had no DSL equivalent (with counts and reasons).
``export-t3d FILE.dsl [--out FILE]`` writes text to paste into a Blueprint graph;
``export-t3d --coverage`` lists which catalog node types export.

``--json`` shapes (a contract for other tools):

* import: ``{"files":[{"path","dsl","report":{...},"diagnostics":[...],"training_row"?}],"totals":{...}}``;
  a file that gives no DSL node has ``"dsl": null`` and an ``"error"`` (exit 1, nothing written)
* export: ``{"path","t3d","report":{...},"diagnostics":[...]}``; coverage: ``{"catalog_types","exported","missing"}``
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text


def _read(path: Path) -> str:
    """Clipboard files are UTF-8 or (saved from Windows tools) UTF-16 with a BOM."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    return data.decode("utf-8-sig", errors="replace")


def register(subparsers: argparse._SubParsersAction) -> None:
    imp = subparsers.add_parser(
        "import-t3d",
        help="Unreal Blueprint clipboard text → DSL (with a report of what did not map)",
        description="Convert Unreal Blueprint editor copies (T3D clipboard text) into Blueprint DSL. "
        "Everything without a DSL equivalent (ControlRig graphs, unknown node classes, unmapped pins) "
        "is reported per file with a count and a reason.",
    )
    imp.add_argument("files", nargs="+", metavar="FILE", help="clipboard text files (.txt/.t3d/.copy)")
    imp.add_argument("--out", metavar="DIR", help="write DIR/<name>.dsl (and DIR/training_rows.jsonl with --training-row)")
    imp.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    imp.add_argument("--training-row", action="store_true", help="also emit a dataset row with an instruction stub to complete")
    imp.add_argument("--parent", metavar="CLASS", help="PARENT class to write (clipboard text does not carry it)")
    imp.add_argument("--context", metavar="FILE.dsl", help="existing DSL whose BLUEPRINT/PARENT/VAR lines to keep")
    imp.add_argument("--strict", action="store_true", help="exit 1 when an imported text has validation errors")
    imp.set_defaults(func=cmd_import)

    exp = subparsers.add_parser(
        "export-t3d",
        help="DSL → Unreal Blueprint clipboard text (paste into the Blueprint editor)",
        description="Write Unreal 5 clipboard text for a DSL file: copy it and paste into a Blueprint graph.",
    )
    exp.add_argument("file", nargs="?", metavar="FILE.dsl", help="DSL file ('-' for stdin)")
    exp.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    exp.add_argument("--seed", type=int, default=None, help="deterministic GUIDs (tests, reproducible files)")
    exp.add_argument("--asset-root", default="/Game/Blueprints", help="content folder for class/asset references")
    exp.add_argument("--json", action="store_true", help="machine-readable output")
    exp.add_argument("--coverage", action="store_true", help="list which catalog node types export, then exit")
    exp.set_defaults(func=cmd_export)


def cmd_import(args: argparse.Namespace) -> int:
    from ..parser import parse
    from .importer import import_t3d_text

    context = None
    if args.context:
        try:
            context = parse(_read(Path(args.context)))
        except OSError as exc:
            print(f"bpllm import-t3d: cannot read --context {args.context}: {exc.strerror}", file=sys.stderr)
            return 2
    out_dir = Path(args.out) if args.out else None
    results: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    totals = {"files": 0, "nodes": 0, "exec_wires": 0, "data_wires": 0, "params": 0, "unsupported": 0, "errors": 0}
    failed = False
    unreadable = False
    empty = False
    for name in args.files:
        path = Path(name)
        try:
            text = _read(path)
        except OSError as exc:
            print(f"bpllm import-t3d: {name}: cannot read ({exc.strerror}); check the path", file=sys.stderr)
            unreadable = True
            continue
        started = time.perf_counter()
        result = import_t3d_text(text, source=path.name, parent=args.parent, context=context)
        elapsed_ms = (time.perf_counter() - started) * 1000
        rep = result.report
        if rep.nodes_imported == 0:  # an empty graph is not a DSL text: say why, write nothing
            reason = _nothing_imported(text, rep)
            print(f"bpllm import-t3d: {path}: {reason}; nothing written (copy nodes in the Unreal Blueprint "
                  "editor and save that clipboard text)", file=sys.stderr)
            results.append({"path": str(path), "dsl": None, "error": reason, "report": rep.to_dict(),
                            "diagnostics": [], "bytes": len(text.encode("utf-8")),
                            "elapsed_ms": round(elapsed_ms, 1)})
            empty = True
            continue
        errors = [d for d in result.diagnostics if d.severity == "error"]
        totals["files"] += 1
        totals["nodes"] += rep.nodes_imported
        totals["exec_wires"] += rep.exec_wires
        totals["data_wires"] += rep.data_wires
        totals["params"] += rep.params
        totals["unsupported"] += rep.unsupported_total
        totals["errors"] += len(errors)
        failed = failed or bool(errors)
        row = result.training_row() if args.training_row else None
        if row is not None:
            rows.append(row)
        if out_dir is not None:
            atomic_write_text(out_dir / f"{path.stem}.dsl", result.dsl_text)
        entry = {
            "path": str(path),
            "dsl": result.dsl_text,
            "report": rep.to_dict(),
            "diagnostics": [d.to_dict() for d in result.diagnostics],
            "bytes": len(text.encode("utf-8")),
            "elapsed_ms": round(elapsed_ms, 1),
        }
        if row is not None:
            entry["training_row"] = row
        results.append(entry)
        if not args.json:
            print(f"{rep.summary()}\n  ({len(text) / 1e6:.2f} MB in {elapsed_ms:.0f} ms)", file=sys.stderr)
            for d in errors[:5]:
                print(f"  {path.name}: dsl {d}", file=sys.stderr)
            if out_dir is None:
                sys.stdout.write(result.dsl_text + ("\n" if len(args.files) > 1 else ""))
    if out_dir is not None and rows:
        atomic_write_text(out_dir / "training_rows.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    if args.json:
        json.dump({"files": results, "totals": totals}, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        if rows and out_dir is None:
            for r in rows:
                sys.stdout.write(json.dumps(r, ensure_ascii=False) + "\n")
        if totals["files"]:  # a run that imported nothing has said why, one line a file
            print(
                f"{totals['files']} file(s): {totals['nodes']} nodes, {totals['exec_wires']} EXEC, "
                f"{totals['data_wires']} DATA, {totals['params']} params; {totals['unsupported']} unsupported "
                "item(s) reported" + (f"; written to {out_dir}" if out_dir else ""),
                file=sys.stderr,
            )
    if unreadable:
        return 2
    return 1 if empty or (args.strict and failed) else 0


def _nothing_imported(text: str, rep: Any) -> str:
    """Why a file gave no DSL node, in words a user can act on."""
    if not text.strip():
        return "empty file"
    if "Begin Object" not in text and ("\ufffd" in text or "\x00" in text):
        return "not Unreal clipboard text (binary data, or not UTF-8/UTF-16)"
    if rep.kind == "controlrig":
        return f"a ControlRig graph ({rep.rigvm_objects} RigVM objects): no Blueprint DSL equivalent"
    if rep.graph_nodes:
        return f"none of its {rep.graph_nodes} graph node(s) maps to DSL (see --json for the report)"
    return "no Blueprint nodes found (no 'Begin Object' block)"


def cmd_export(args: argparse.Namespace) -> int:
    from .exporter import export_coverage, export_t3d_result

    if args.coverage:
        cov = export_coverage()
        if args.json:
            print(json.dumps(cov, indent=1))
        else:
            print(f"{cov['exported']}/{cov['catalog_types']} catalog node types export to Unreal clipboard text")
            if cov["missing"]:
                print("not exported: " + ", ".join(cov["missing"]))
        return 0
    if not args.file:
        print("bpllm export-t3d: give a DSL file (or --coverage)", file=sys.stderr)
        return 2
    try:
        text = sys.stdin.read() if args.file == "-" else _read(Path(args.file))
    except OSError as exc:
        print(f"bpllm export-t3d: {args.file}: cannot read ({exc.strerror}); check the path", file=sys.stderr)
        return 2
    result = export_t3d_result(text, seed=args.seed, asset_root=args.asset_root)
    for d in result.diagnostics:
        print(f"{args.file}:{d.line}:{d.column}: {d.severity} [{d.code}] {d.message}", file=sys.stderr)
    if args.out:
        atomic_write_text(Path(args.out), result.text)
    if args.json:
        print(
            json.dumps(
                {
                    "path": args.file,
                    "t3d": result.text,
                    "report": result.report.to_dict(),
                    "diagnostics": [d.to_dict() for d in result.diagnostics],
                },
                indent=1,
            )
        )
    else:
        if not args.out:
            sys.stdout.write(result.text)
        print(result.report.summary() + (f"; written to {args.out}" if args.out else ""), file=sys.stderr)
    return 1 if result.diagnostics else 0
