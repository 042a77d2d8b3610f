"""`bpllm import-blend`, `export-blend` and `render-material`: real Blender files ⇄ the material language.

``import-blend FILE.blend... --out DIR [--json] [--roundtrip] [--format dsl|json]`` writes one file per
material and per shader node group (``DIR/<blend stem>/<material|group>_<name>.dsl``) and reports,
per file, what did not map and why. ``--roundtrip`` also exports every imported graph back to a
.blend, reopens it and compares (node types, links, non-default values, enums, groups used).
``export-blend FILE... --out OUT.blend`` builds materials and the groups they use.
``render-material FILE... --out F.png`` renders a material ball in Cycles on the CPU.

Without bpy each command prints one line saying how to install it and exits 1.

``import-blend --json`` shape (a contract for other tools)::

    {"files": [{"path", "opened": bool, "error"?, "warnings": [...],
                "graphs": [{"kind", "name", "nodes", "links", "out"?, "diagnostics"?, "roundtrip"?}],
                "unmapped": [{"owner", "what", "reason"}]}],
     "totals": {"files", "opened", "failed", "materials", "groups", "written", "skipped", "valid", "invalid",
                "validation_errors",
                "unmapped", "unmapped_by_reason": {reason: n},
                "roundtrip"?: {"identical", "different", "build_failed"}}}

A graph the DSL cannot hold has ``"skipped": [reasons]`` instead of ``"out"``.
``roundtrip`` per graph is ``"identical"`` or a list of differences (or ``"build failed: …"``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from dsl.errors import BpllmError

from dsl.atomic import atomic_write_text
from . import bridge, modeljson
from .model import Graph


def register(subparsers: argparse._SubParsersAction) -> None:
    imp = subparsers.add_parser(
        "import-blend",
        help="Blender .blend → material DSL (one file per material and shader node group, with a report)",
        description="Open .blend files in Blender (bpy) and write each material with a stored node tree and "
        "each shader node group as a material DSL file: reroutes resolved, frames dropped, only "
        "non-default values. What did not map (script nodes, packed images, drivers, add-on nodes) is "
        "reported per file with a reason.",
    )
    imp.add_argument("files", nargs="+", metavar="FILE.blend")
    imp.add_argument("--out", metavar="DIR", help="write DIR/<blend stem>/<material|group>_<name>.dsl")
    imp.add_argument("--json", action="store_true", help="print the report as JSON on stdout")
    imp.add_argument("--roundtrip", action="store_true",
                     help="also export each file's graphs to a .blend, reopen it and compare (prints the counts)")
    imp.add_argument("--format", choices=("dsl", "json"), default=None,
                     help="dsl (default when the text layer is installed) or the graph model as JSON")
    imp.set_defaults(func=cmd_import)

    exp = subparsers.add_parser(
        "export-blend",
        help="material DSL → Blender .blend (materials and the groups they use, laid out left to right)",
        description="Build the materials and node groups of DSL (or graph JSON) files in Blender and save "
        "one .blend. Links Blender marks invalid, unknown types, sockets or enum items are errors.",
    )
    exp.add_argument("files", nargs="+", metavar="FILE.dsl", help="material and group files (.dsl or .json)")
    exp.add_argument("--out", metavar="OUT.blend", required=True)
    exp.set_defaults(func=cmd_export)

    ren = subparsers.add_parser(
        "render-material",
        help="render a material DSL file on a ball (Cycles, CPU) to a PNG",
        description="Render the first material of FILE on a sphere over a checker floor with Cycles on the "
        "CPU. Further files supply the node groups the material uses.",
    )
    ren.add_argument("files", nargs="+", metavar="FILE.dsl", help="the material (and files of groups it uses)")
    ren.add_argument("--out", metavar="F.png", required=True)
    ren.add_argument("--size", type=int, default=256, help="image width and height in pixels (default 256)")
    ren.add_argument("--samples", type=int, default=16, help="Cycles samples (default 16)")
    ren.add_argument("--material", metavar="NAME", help="which material to render when FILE has several")
    ren.set_defaults(func=cmd_render)

    rex = subparsers.add_parser(
        "render-exam",
        help="render each exam record's expected and actual material (previews for the exam review)",
        description="Render the gold and the model's material of every record of a version's exams "
        "(models/vN/exams/exam_*.jsonl) to previews/<hash>.png beside them, with an index "
        "previews/<exam>.previews.json per exam file. Already rendered texts are not rendered again.",
    )
    rex.add_argument("-w", "--workspace", default=".", metavar="WS", help="workspace (default: .)")
    rex.add_argument("--version", metavar="vN", help="model version (default: the newest with exams)")
    rex.add_argument("--size", type=int, default=160, help="image width and height in pixels (default 160)")
    rex.add_argument("--samples", type=int, default=8, help="Cycles samples (default 8)")
    rex.add_argument("--json", action="store_true", help="print the counts as JSON on stdout")
    rex.set_defaults(func=cmd_render_exam)


# -- text layer: DSL when the language's text module is there, graph JSON always ---------------------
def _text_module() -> Any | None:
    try:
        from . import text  # noqa: PLC0415 - the DSL text layer (optional on this branch)
    except ImportError:
        return None
    return text if hasattr(text, "to_text") and hasattr(text, "from_text") else None


def graph_to_text(graph: Graph, fmt: str) -> str:
    if fmt == "json":
        return modeljson.to_json(graph)
    return _text_module().to_text(graph)  # type: ignore[union-attr]


def parse_graph_text(text: str, where: str) -> tuple[Graph | None, list[Any]]:
    """A graph from DSL text or graph JSON (by content), with the text layer's diagnostics."""
    if text.lstrip().startswith("{"):
        return modeljson.from_json(text, where), []
    mod = _text_module()
    if mod is None:
        raise BpllmError(f"{where}: the material DSL text layer is not installed here",
                         "give graph JSON (`bpllm import-blend --format json`)")
    return mod.from_text(text)


def load_graph_files(paths: list[str], cmd: str) -> list[Graph]:
    """Graphs of DSL/JSON files in the bpy side's spelling (bridge.from_text_model for DSL texts);
    errors (unreadable, diagnostics) as one BpllmError naming file:line."""
    graphs: list[Graph] = []
    from_dsl: list[bool] = []
    for name in paths:
        try:
            text = Path(name).read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise BpllmError(f"{name}: cannot read ({exc.strerror})", "check the path") from None
        except UnicodeDecodeError:
            raise BpllmError(f"{name}: not UTF-8 text", "give a material DSL or graph JSON file") from None
        graph, diags = parse_graph_text(text, name)
        from_dsl.append(not text.lstrip().startswith("{"))
        errors = [d for d in diags if getattr(d, "severity", "error") == "error"]
        if graph is None or errors:
            first = errors[0] if errors else None
            where = f"{name}:{first.line}:{first.column}" if first is not None else name
            raise BpllmError(f"{where}: {first.message if first is not None else 'no material graph'}"
                             + (f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""),
                             "run `bpllm validate` on it")
        graphs.append(graph)
    groups = {g.name: g for g in graphs if g.kind == "group"}
    return [bridge.from_text_model(g, groups) if dsl else g for g, dsl in zip(graphs, from_dsl)]


def _need_bpy(cmd: str) -> bool:
    from .blend import bpy_available, INSTALL_HINT  # noqa: PLC0415 - keeps `bpllm --help` light

    if bpy_available():
        return True
    print(f"bpllm {cmd}: Blender (the bpy module) is not installed; {INSTALL_HINT}", file=sys.stderr)
    return False


def _stdout_done() -> None:
    """Blender prints "Not freed memory blocks" on the C stdout at exit: once our output is written,
    point fd 1 at stderr so ``--json`` stdout stays one JSON document."""
    sys.stdout.flush()
    os.dup2(2, 1)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "unnamed"


# -- import-blend --------------------------------------------------------------------------------------
def cmd_import(args: argparse.Namespace) -> int:
    if not _need_bpy("import-blend"):
        return 1
    from .blend import catalog_types, read_blend  # noqa: PLC0415

    fmt = args.format or ("dsl" if _text_module() is not None else "json")
    if fmt == "dsl" and _text_module() is None:
        print("bpllm import-blend: the material DSL text layer is not installed here; use --format json", file=sys.stderr)
        return 2
    known = catalog_types()
    out_dir = Path(args.out) if args.out else None
    files: list[dict[str, Any]] = []
    reasons: Counter[str] = Counter()
    totals: dict[str, Any] = {"files": 0, "opened": 0, "failed": 0, "materials": 0, "groups": 0, "written": 0,
                              "skipped": 0, "valid": 0, "invalid": 0, "validation_errors": 0, "unmapped": 0}
    rt = {"identical": 0, "different": 0, "build_failed": 0}
    for name in args.files:
        totals["files"] += 1
        entry: dict[str, Any] = {"path": name, "opened": False, "warnings": [], "graphs": [], "unmapped": []}
        files.append(entry)
        try:
            graphs, unmapped = read_blend(name, known_types=known, log=entry["warnings"])
        except BpllmError as exc:
            totals["failed"] += 1
            entry["error"] = str(exc)
            print(f"bpllm import-blend: {exc}", file=sys.stderr)
            continue
        entry["opened"] = True
        totals["opened"] += 1
        entry["unmapped"] = [{"owner": u.owner, "what": u.what, "reason": u.reason} for u in unmapped]
        totals["unmapped"] += len(unmapped)
        reasons.update(u.reason for u in unmapped)
        used: set[str] = set()
        texts: dict[tuple[str, str], str] = {}
        written: dict[tuple[str, str], Graph] = {}  # what the text says, in the bpy side's spelling
        groups = {g.name: g for g in graphs if g.kind == "group"}
        for g in graphs:
            totals["materials" if g.kind == "material" else "groups"] += 1
            info: dict[str, Any] = {"kind": g.kind, "name": g.name, "nodes": len(g.nodes), "links": len(g.links)}
            entry["graphs"].append(info)
            if fmt == "dsl":
                problems = bridge.text_problems(g)
                for why in problems:
                    entry["unmapped"].append({"owner": g.name, "what": f"{g.kind} '{g.name}'", "reason": why})
                    reasons[why] += 1
                    totals["unmapped"] += 1
                if problems:
                    info["skipped"] = problems
                    totals["skipped"] += 1
                    continue
                tg, dropped = bridge.to_text_model(g, groups)
                for what, why in dropped:
                    entry["unmapped"].append({"owner": g.name, "what": what, "reason": why})
                    reasons[why] += 1
                    totals["unmapped"] += 1
                text = graph_to_text(tg, fmt)
                written[(g.kind, g.name)] = bridge.from_text_model(tg, groups)
                _graph, diags = parse_graph_text(text, f"{name}:{g.kind} {g.name}")
                errors = [d for d in diags if getattr(d, "severity", "error") == "error"]
                if errors:
                    info["diagnostics"] = [str(d) for d in errors]
                    totals["validation_errors"] += len(errors)
                    totals["invalid"] += 1
                else:
                    totals["valid"] += 1
            else:
                text = graph_to_text(g, fmt)
                written[(g.kind, g.name)] = g
            texts[(g.kind, g.name)] = text
            if out_dir is not None:
                stem = f"{g.kind}_{_safe(g.name)}"
                target = out_dir / _safe(Path(name).stem) / f"{stem}.{fmt}"
                n = 2
                while target.name.lower() in used:
                    target = target.with_name(f"{stem}_{n}.{fmt}")
                    n += 1
                used.add(target.name.lower())
                atomic_write_text(target, text)
                info["out"] = str(target)
                totals["written"] += 1
        if args.roundtrip and graphs:
            _roundtrip(name, written, texts, entry, rt, known)
        if not args.json:
            mats = sum(1 for g in graphs if g.kind == "material")
            line = f"{name}: {mats} material(s), {len(graphs) - mats} group(s), {len(entry['unmapped'])} unmapped"
            if args.roundtrip:
                same = sum(1 for i in entry["graphs"] if i.get("roundtrip") == "identical")
                line += f"; round trip identical {same}/{len(graphs)}"
            print(line, file=sys.stderr)
            for u in entry["unmapped"]:
                print(f"  {u['owner']}: {u['what']}: {u['reason']}", file=sys.stderr)
            for info in entry["graphs"]:
                if info.get("roundtrip") not in (None, "identical"):
                    print(f"  round trip {info['kind']} '{info['name']}': {info['roundtrip']}", file=sys.stderr)
                for d in info.get("diagnostics", [])[:3]:
                    print(f"  {info['kind']} '{info['name']}': dsl {d}", file=sys.stderr)
    totals["unmapped_by_reason"] = dict(reasons.most_common())
    if args.roundtrip:
        totals["roundtrip"] = rt
    if args.json:
        json.dump({"files": files, "totals": totals}, sys.stdout, indent=1, ensure_ascii=False)
        sys.stdout.write("\n")
        _stdout_done()
    else:
        print(f"files {totals['files']}: opened {totals['opened']}, failed {totals['failed']}; "
              f"materials {totals['materials']}, groups {totals['groups']}"
              + (f", written {totals['written']} to {out_dir}" if out_dir else "")
              + (f", skipped {totals['skipped']}; DSL valid {totals['valid']}, invalid {totals['invalid']}"
                 if fmt == "dsl" else "")
              + f"; validation errors {totals['validation_errors']}; unmapped {totals['unmapped']}", file=sys.stderr)
        for reason, n in reasons.most_common():
            print(f"  {n:4d}  {reason}", file=sys.stderr)
        if args.roundtrip:
            print(f"round trip: identical {rt['identical']}, different {rt['different']}, "
                  f"build failed {rt['build_failed']}", file=sys.stderr)
    if totals["failed"]:
        return 1
    return 1 if args.roundtrip and (rt["different"] or rt["build_failed"]) else 0


def _roundtrip(name: str, written: dict[tuple[str, str], Graph], texts: dict[tuple[str, str], str],
               entry: dict[str, Any], rt: dict[str, int], known: frozenset[str] | None) -> None:
    """Through the written TEXT: parse it back, build in Blender, save, reopen, reimport, and compare
    with what the text was written from. Graphs whose text does not parse are "build failed"."""
    from .blend import BuildError, compare, read_blend, write_blend  # noqa: PLC0415

    infos = {(i["kind"], i["name"]): i for i in entry["graphs"]}
    parsed: list[Graph] = []
    keys: list[tuple[str, str]] = []
    for key, text in texts.items():
        g, diags = parse_graph_text(text, f"{name}:{key[0]} {key[1]}")
        if g is None:
            infos[key]["roundtrip"] = "build failed: the written text does not parse"
            rt["build_failed"] += 1
            continue
        parsed.append(g)
        keys.append(key)
    text_side = [g for g, k in zip(parsed, keys)]
    groups = {g.name: g for g in text_side if g.kind == "group"}
    back = [bridge.from_text_model(g, groups) if not texts[k].lstrip().startswith("{") else g
            for g, k in zip(text_side, keys)]
    fd, tmp = tempfile.mkstemp(prefix=".bpllm-roundtrip-", suffix=".blend")
    os.close(fd)
    try:
        try:
            write_blend(back, tmp)
        except BuildError as exc:
            for key in keys:
                infos[key]["roundtrip"] = f"build failed: {'; '.join(exc.problems[:3])}"
                rt["build_failed"] += 1
            return
        again, _u = read_blend(tmp, known_types=known)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    by_key = {(g.kind, g.name): g for g in again}
    for key in keys:
        other = by_key.get(key)
        diffs = compare(written[key], other) if other is not None else [f"{key[0]} '{key[1]}' missing after export"]
        infos[key]["roundtrip"] = "identical" if not diffs else diffs
        rt["identical" if not diffs else "different"] += 1


# -- export-blend / render-material -----------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    if not _need_bpy("export-blend"):
        return 1
    from .blend import write_blend  # noqa: PLC0415

    try:
        graphs = load_graph_files(args.files, "export-blend")
        out = write_blend(graphs, args.out)
    except BpllmError as exc:
        print(f"bpllm export-blend: {exc}", file=sys.stderr)
        for p in getattr(exc, "problems", [])[1:]:
            print(f"  {p}", file=sys.stderr)
        return 1
    mats = sum(1 for g in graphs if g.kind == "material")
    print(f"wrote {out}: {mats} material(s), {len(graphs) - mats} node group(s)", file=sys.stderr)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    if not _need_bpy("render-material"):
        return 1
    from .render import render_material  # noqa: PLC0415

    try:
        graphs = load_graph_files(args.files, "render-material")
        out = render_material(graphs, args.out, size=args.size, samples=args.samples, material=args.material)
    except BpllmError as exc:
        print(f"bpllm render-material: {exc}", file=sys.stderr)
        for p in getattr(exc, "problems", [])[1:]:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"wrote {out} ({args.size}x{args.size}, {args.samples} samples)", file=sys.stderr)
    return 0


def cmd_render_exam(args: argparse.Namespace) -> int:
    if not _need_bpy("render-exam"):
        return 1
    from .previews import PreviewReport, render_exam_file, version_exam_files  # noqa: PLC0415

    if args.size < 8 or args.samples < 1:
        print(f"bpllm render-exam: --size {args.size} / --samples {args.samples} too small "
              "(use a size >= 8 and samples >= 1)", file=sys.stderr)
        return 2
    try:
        version, files = version_exam_files(args.workspace, args.version)
        report = PreviewReport()
        for path in files:
            render_exam_file(path, size=args.size, samples=args.samples, report=report)
    except BpllmError as exc:
        print(f"bpllm render-exam: {exc}", file=sys.stderr)
        return 1
    counts = {"version": version, "exams": report.exams, "records": report.records, "rendered": report.rendered,
              "cached": report.cached, "failed": report.failed, "indexes": report.indexes}
    if args.json:
        json.dump(counts, sys.stdout, indent=1)
        sys.stdout.write("\n")
        _stdout_done()
    else:
        print(f"{version}: {report.exams} exam file(s), {report.records} record(s): rendered {report.rendered}, "
              f"cached {report.cached}, no image {report.failed}", file=sys.stderr)
    return 0
# -- bpllm validate --in-blender ----------------------------------------------------------------------
def in_blender_diagnostics(texts: list[str]) -> list[list[Any]] | None:
    """Blender's verdict on material DSL TEXTS built together (so materials find their groups), as
    one list of diagnostics per text; None when bpy is not installed. Texts that do not parse are
    left out (their own diagnostics already say why)."""
    from dsl.ast import Diagnostic  # noqa: PLC0415

    from .blend import bpy_available, validate_in_blender  # noqa: PLC0415
    from .text import from_text  # noqa: PLC0415

    if not bpy_available():
        return None
    parsed: list[tuple[int, Graph]] = []
    for i, text in enumerate(texts):
        g, _d = from_text(text)
        if g is not None:
            parsed.append((i, g))
    out: list[list[Any]] = [[] for _ in texts]
    if not parsed:
        return out
    for batch in _batches(parsed):
        problems = validate_in_blender(bridge.from_text_models([g for _i, g in batch]))
        owners = {f"{g.kind} '{g.name}'": i for i, g in batch}
        for p in problems:
            owner = next((k for k in owners if p.startswith(k)), None)
            targets = [owners[owner]] if owner is not None else [i for i, _g in batch]
            for i in targets:
                message = f"Blender: {p}"
                if all(d.message != message for d in out[i]):
                    out[i].append(Diagnostic(1, 1, 1, 2, "error", "blender", message))
    return out


def _batches(parsed: list[tuple[int, Graph]]) -> list[list[tuple[int, Graph]]]:
    """Texts built together, as few batches as names allow: all at once when every name is unique (a
    material finds any group given); else (a dataset where two repositories both have a "Material" or a
    "NodeGroup") each material goes with the groups it calls — the nearest one of that name before it, as
    `dataset build` writes them — and the groups those call, into the first batch where none of those
    names means something else, so Blender never renames one to "X.001" and mixes them up."""
    keys = [(g.kind, g.name) for _i, g in parsed]
    if len(set(keys)) == len(keys):
        return [parsed]
    group_at: dict[str, list[int]] = {}  # group name -> positions in ``parsed``, in order
    for pos, (_i, g) in enumerate(parsed):
        if g.kind == "group":
            group_at.setdefault(g.name, []).append(pos)

    def nearest(name: str, pos: int) -> int | None:
        """The last group of that name before POS, else the first after it."""
        at = group_at.get(name, [])
        before = [q for q in at if q < pos]
        return before[-1] if before else next((q for q in at if q > pos), None)

    def calls(pos: int, seen: set[int]) -> list[tuple[int, Graph]]:
        """The groups parsed[pos] calls, and the ones they call, nearest of each name first (no repeats)."""
        out: list[tuple[int, Graph]] = []
        for name in dict.fromkeys(parsed[pos][1].groups_used):
            hit = nearest(name, pos)
            if hit is None or parsed[hit][0] in seen:
                continue
            seen.add(parsed[hit][0])
            out += [*calls(hit, seen), parsed[hit]]
        return out

    units = [[*calls(pos, {i}), (i, g)] for pos, (i, g) in enumerate(parsed)]
    batches: list[tuple[list[tuple[int, Graph]], dict[tuple[str, str], int]]] = []
    for unit in units:
        for batch, names in batches:
            if all(names.get((g.kind, g.name), i) == i for i, g in unit):
                break
        else:
            batch, names = [], {}
            batches.append((batch, names))
        for i, g in unit:
            if (g.kind, g.name) not in names:
                names[(g.kind, g.name)] = i
                batch.append((i, g))
    return [batch for batch, _names in batches]
