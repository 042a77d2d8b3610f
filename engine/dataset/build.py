"""`bpllm dataset build --from DIR`: .blend files -> training rows, repository splits and an exam lesson.

The pipeline, per file in sorted order (so a seed always gives the same result):

1. provenance: repository, path and licence from a ``bpllm scrape github`` metadata JSONL, the corpus'
   ``manifest.json`` or ``SOURCES.md`` -- matched by the file's SHA-256, else its name. A file nobody
   describes counts as its own repository (named after its folder) with licence "unknown";
2. the Blender pack's importer (``blend.read_blend``) gives material and node-group graphs;
3. each material (with fewer than ``MIN_NODES`` real nodes: skipped as empty) becomes a row: the
   instruction from ``describe(graph, seed)``, the output from the pack's text side. Node groups a
   material uses are rows of their own that the material refers to by name (``groups="reference"``, the
   default: the material language has one header per text), or written before it into one text
   (``groups="include"``, for a language that allows several blocks). Graphs go through the pack's
   bridge exactly as ``bpllm import-blend`` writes them;
4. the pack's validation: a row with errors goes to ``datasets/quarantine/build-*.jsonl`` with them;
5. dedup with step 1.5's tools: exact (the same text, names masked), then near-duplicates by template
   fingerprint (literal values masked; ``[data] near_duplicate_keep`` kept per fingerprint). The
   instruction is left out of both: it is generated from the graph, so the graph alone decides;
6. splits by repository (no repository in two splits; deterministic by seed): train and validation
   rows go to ``datasets/sources/blend.jsonl`` marked ``"split"``, which step 1.5 keeps; the test rows
   become the held-out exam lesson ``lessons/blend_test.json`` and are never trained on.

Everything is written atomically at the end, so an interrupted build changes nothing.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from dsl import packs
from dsl.packs.blender_material import blend, bridge
from dsl.packs.blender_material import text as material_text
from dsl.packs.blender_material.describe import describe
from engine.atomic import atomic_write_json, atomic_write_jsonl, sha256_file
from engine.dataset.rows import (Problem, mask_literals, restore_called, template_fingerprint, too_long,
                                 write_quarantine)

LANGUAGE = "blender-material"
MIN_NODES = 2  # fewer real nodes (frames and reroutes do not count): not a material graph worth learning
VAL_FRACTION = 0.1
TEST_FRACTION = 0.1
ROWS_FILE = "blend.jsonl"  # under datasets/sources/
LESSON_ID = "blend_test"
REPORT_FILE = "blend_build.json"  # under datasets/generated/


class BuildError(RuntimeError):
    """A refusal: one line naming the folder or file and the fix."""


# --------------------------------------------------------------------------- provenance
@dataclass
class Provenance:
    repository: str
    path: str
    licence: str
    stars: int | None = None
    known: bool = True


def _first(row: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        if row.get(k) not in (None, ""):
            return row[k]
    return None


def _entry(row: dict[str, Any]) -> Provenance | None:
    repo = _first(row, "repository", "repo", "full_name")
    if isinstance(repo, dict):
        repo = repo.get("full_name")
    if not isinstance(repo, str) or not repo:
        return None
    repo = re.sub(r"^(https?://)?github\.com/", "", repo).strip("/")
    lic = _first(row, "licence", "license", "license_spdx", "licence_spdx")
    if isinstance(lic, dict):
        lic = lic.get("spdx_id") or lic.get("name")
    stars = _first(row, "stars", "stargazers_count")
    return Provenance(repo, str(_first(row, "path") or ""), _licence(str(lic or "unknown")),
                      int(stars) if isinstance(stars, (int, float)) else None)


def _licence(text: str) -> str:
    """"GPL-3.0 (LICENSE)" -> "GPL-3.0": the file it was read from is not part of the licence."""
    return re.sub(r"\s*\([^)]*\)\s*$", "", text.strip()) or "unknown"


_SOURCES_LINE = re.compile(r"^- `(?:files/)?(?P<name>[^`]+)` \| (?P<repo>[^|]+?) \| `(?P<path>[^`]*)` \|"
                           r"(?P<commit>[^|]*)\|(?P<licence>[^|]+)\|")


def read_provenance(root: Path) -> tuple[dict[str, Provenance], dict[str, Provenance]]:
    """(by sha256, by file name) from the metadata files at the top of ROOT and, for a ``files/`` folder
    like the corpus', one level up. Bytes found in several repositories belong to the first one
    listed: one file, one side of the split."""
    by_sha: dict[str, Provenance] = {}
    by_name: dict[str, Provenance] = {}

    def add(row: dict[str, Any]) -> None:
        prov = _entry(row)
        if prov is None:
            return
        sha = row.get("sha256")
        if isinstance(sha, str):
            by_sha.setdefault(sha.lower(), prov)
        for k in ("name", "file", "local_path", "filename", "stored_as", "out"):
            if isinstance(row.get(k), str):
                by_name.setdefault(Path(row[k]).name, prov)

    for folder in (root, root.parent):
        _read_metadata(folder, add)
    return by_sha, by_name


def _read_metadata(root: Path, add: Callable[[dict[str, Any]], None]) -> None:
    for meta in sorted(root.glob("*.jsonl")):
        for line in meta.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                add(row)
    manifest = root / "manifest.json"
    if manifest.exists():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise BuildError(f"{manifest}: not valid JSON ({exc}); fix or remove it") from None
        for row in data if isinstance(data, list) else data.get("files", []) if isinstance(data, dict) else []:
            if isinstance(row, dict):
                add(row)
    sources = root / "SOURCES.md"
    if sources.exists():
        for line in sources.read_text(encoding="utf-8", errors="replace").splitlines():
            m = _SOURCES_LINE.match(line.strip())
            if m:
                add({"name": m["name"], "repository": m["repo"].strip(), "path": m["path"],
                     "licence": m["licence"]})


def provenance_of(path: Path, root: Path, by_sha: dict[str, Provenance], by_name: dict[str, Provenance]) -> Provenance:
    found = by_sha.get(sha256_file(path)) or by_name.get(path.name)
    if found:
        return found
    rel = path.relative_to(root)
    folder = str(rel.parent) if str(rel.parent) != "." else root.name
    return Provenance(f"local:{folder}", str(rel), "unknown", known=False)


# --------------------------------------------------------------------------- the language side
@dataclass
class Language:
    """What the build needs from the Blender pack; tests and the pack's authors can pass their own."""

    read_blend: Callable[[Path], tuple[list[Any], list[Any]]]
    # (material or group graph, groups written into its text, every group of its file by name) -> text
    render: Callable[[Any, list[Any], dict[str, Any]], str]
    validate: Callable[[str], list[Any]]  # text -> diagnostics (.severity, .line, .message)
    header_keys: tuple[str, ...] = ("MATERIAL", "GROUP")
    canonical: Callable[[str], str] | None = None  # the pack's formatter, when it has one


def pack_language() -> Language:
    """The installed Blender pack's importer, text side and validation (bpy loads inside read_blend)."""
    try:
        pack = packs.load(LANGUAGE)
    except LookupError as exc:
        raise BuildError(f"the Blender material pack is not available ({type(exc).__name__}: {exc}); "
                         f"`bpllm dataset build` needs dsl.packs.blender_material") from None

    def render(graph: Any, inline: list[Any], file_groups: dict[str, Any]) -> str:
        # the same path as `bpllm import-blend`: the bpy-side graph goes through the bridge into the text
        # side's spelling (group sockets by name, ramps, out_ values) before it is written
        problems = bridge.text_problems(graph)
        if problems:
            raise BuildError("; ".join(problems))
        parts = []
        for g in [*inline, graph]:
            tg, _dropped = bridge.to_text_model(g, file_groups)  # what is dropped is in the read's unmapped list
            parts.append(material_text.to_text(tg))
        return "\n\n".join(parts)

    def canonical(t: str) -> str:
        return pack.format(t)

    return Language(read_blend=lambda p: blend.read_blend(str(p)), render=render, validate=pack.validate,
                    header_keys=tuple(pack.header_keys) or ("MATERIAL", "GROUP"), canonical=canonical)


# --------------------------------------------------------------------------- rows
def _real_nodes(graph: Any) -> int:
    return sum(1 for n in graph.nodes if n.bl_idname not in ("NodeFrame", "NodeReroute"))


def _groups_used(graph: Any, groups: dict[str, Any]) -> list[Any]:
    """Node groups the graph uses, transitively, dependencies first; each once."""
    out: list[Any] = []
    seen: set[str] = set()

    def visit(g: Any) -> None:
        for name in g.groups_used:
            if name in seen or name not in groups:
                continue
            seen.add(name)
            visit(groups[name])
            out.append(groups[name])

    visit(graph)
    return out


def header_masked(text: str, keys: Iterable[str]) -> str:
    """The text with its header names masked: a copy renamed is still the same graph."""
    for k in keys:
        text = re.sub(rf"^(\s*{re.escape(k)}\s*:).*$", r"\1 _", text, flags=re.M)
    return text.strip()


def _errors(diags: list[Any]) -> list[dict[str, Any]]:
    out = []
    for d in diags:
        dd = d.to_dict() if hasattr(d, "to_dict") else dict(d)
        if dd.get("severity") == "error":
            out.append(dd)
    return out


@dataclass
class BuildResult:
    rows: list[dict[str, Any]]  # every kept row, with its "split"
    problems: list[Problem]
    stats: dict[str, Any]
    lesson: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


def build_rows(files: list[Path], root: Path | Sequence[Path], lang: Language, *, seed: int, near_keep: int,
               groups_mode: str = "reference", val_fraction: float = VAL_FRACTION,
               test_fraction: float = TEST_FRACTION, progress: Callable[[str], None] | None = None) -> BuildResult:
    """The whole pipeline in memory (nothing written): rows with splits, problems and counts.

    ROOT: the folder the files are under, or several (a cycle builds its exports, its scrape folder and
    [sources] blend_dirs together, so dedup and the repository split see every row at once)."""

    if groups_mode not in ("include", "reference"):
        raise BuildError(f"groups mode {groups_mode!r}: one of include, reference")
    roots = [root] if isinstance(root, Path) else list(root)
    by_sha, by_name = {}, {}
    for r in roots:
        shas, names = read_provenance(r)
        for k, v in shas.items():
            by_sha.setdefault(k, v)
        for k, v in names.items():
            by_name.setdefault(k, v)

    def home(path: Path) -> tuple[Path, str]:
        """The root a file is under, and its name as reports show it (root-relative; prefixed when several)."""
        own = next((r for r in roots if path.is_relative_to(r)), path.parent)
        rel = str(path.relative_to(own))
        return own, rel if len(roots) == 1 else f"{own.name}/{rel}"

    problems: list[Problem] = []
    stats: dict[str, Any] = {"files": len(files), "files_unreadable": 0, "files_without_provenance": 0,
                             "materials": 0, "groups": 0, "empty_materials": 0, "unmapped": 0, "rows": 0,
                             "invalid": 0, "duplicates": 0, "near_duplicates": 0, "quarantine_reasons": {}}
    unmapped_reasons: dict[str, int] = {}
    candidates: list[dict[str, Any]] = []
    for i, path in enumerate(files, 1):
        own, rel = home(path)
        prov = provenance_of(path, own, by_sha, by_name)
        stats["files_without_provenance"] += 0 if prov.known else 1
        try:
            graphs, unmapped = lang.read_blend(path)
        except Exception as exc:  # noqa: BLE001 - one unreadable file is reported, the rest still build
            stats["files_unreadable"] += 1
            problems.append(Problem(rel, None, f"could not import: {type(exc).__name__}: {exc}", kind="malformed"))
            if progress:
                progress(f"[{i}/{len(files)}] {rel}: could not import ({type(exc).__name__})")
            continue
        stats["unmapped"] += len(unmapped)
        for u in unmapped:
            key = str(getattr(u, "reason", u))[:80]
            unmapped_reasons[key] = unmapped_reasons.get(key, 0) + 1
        groups = {g.name: g for g in graphs if g.kind == "group"}
        materials = [g for g in graphs if g.kind == "material"]
        stats["materials"] += len(materials)
        stats["groups"] += len(groups)
        emitted_groups: set[str] = set()
        for mat in materials:
            if _real_nodes(mat) < MIN_NODES:
                stats["empty_materials"] += 1
                continue
            used = _groups_used(mat, groups)
            items = [(mat, used if groups_mode == "include" else [])]
            if groups_mode == "reference":
                items = [(g, []) for g in used if g.name not in emitted_groups] + items
                emitted_groups |= {g.name for g in used}
            for graph, inline in items:
                candidates.append({"graph": graph, "inline": inline, "groups": groups, "prov": prov, "file": rel})
        if progress:
            progress(f"[{i}/{len(files)}] {rel}: {len(materials)} material(s), {len(groups)} group(s) "
                     f"({prov.repository})")

    kept: list[dict[str, Any]] = []
    exact: dict[str, str] = {}
    near: dict[str, list[str]] = {}
    dropped: list[tuple[Problem, str]] = []  # duplicates, which a call from a kept row may bring back
    for c in candidates:
        graph, prov = c["graph"], c["prov"]
        where = f"{c['file']}#{graph.kind}:{graph.name}"
        try:
            out = lang.render(graph, c["inline"], c["groups"])
        except Exception as exc:  # noqa: BLE001 - a graph the text side cannot write is quarantined, not fatal
            stats["invalid"] += 1
            reason = f"text side raised {type(exc).__name__}: {exc}"
            _count(stats, "text side raised " + type(exc).__name__)
            problems.append(Problem(c["file"], None, f"{graph.kind} {graph.name!r}: {reason}", row={"source": where}))
            continue
        instruction = describe(graph, seed)
        row = {"instruction": instruction, "input": "", "output": out.rstrip(), "source": where,
               "licence": prov.licence, "repository": prov.repository, "path": prov.path or c["file"],
               "kind": graph.kind, "_name": graph.name, "_calls": list(graph.groups_used)}
        reason = too_long(instruction, out)
        errs: list[dict[str, Any]] = []
        if reason is None:
            try:
                errs = _errors(lang.validate(out))
            except Exception as exc:  # noqa: BLE001 - a validator bug must not lose the row
                errs = [{"line": 1, "severity": "error", "code": "validator-crash",
                         "message": f"validator raised {type(exc).__name__}: {exc}"}]
            if errs:
                more = f" (+{len(errs) - 1} more)" if len(errs) > 1 else ""
                reason = f"invalid: line {errs[0].get('line')}: {errs[0].get('message')}{more}"
                _count(stats, f"[{errs[0].get('code', 'error')}] {mask_literals(str(errs[0].get('message')))[:70]}")
        else:
            _count(stats, "row too long")
        if reason is not None:
            stats["invalid"] += 1
            problems.append(Problem(c["file"], None, f"{graph.kind} {graph.name!r}: {reason}", errs, row))
            continue
        canon = out
        if lang.canonical is not None:
            try:
                canon = lang.canonical(out)
            except Exception:  # noqa: BLE001 - the validated text is its own canonical form then
                canon = out
        body = header_masked(canon, lang.header_keys)
        ekey = hashlib.sha1(body.encode()).hexdigest()
        if ekey in exact:  # the same graph under another name or in another file: one copy is enough
            stats["duplicates"] += 1
            problems.append(Problem(c["file"], None, f"exact duplicate of {exact[ekey]}", row=row, kind="duplicate"))
            dropped.append((problems[-1], "duplicates"))
            continue
        # the instruction is generated from the graph (phrased by a per-graph draw), so the graph alone decides
        fp = template_fingerprint(graph.kind, body)
        bucket = near.setdefault(fp, [])
        if near_keep and len(bucket) >= near_keep:
            stats["near_duplicates"] += 1
            problems.append(Problem(c["file"], None, f"near-duplicate: template {fp} already has {near_keep} rows "
                                                     f"({', '.join(bucket[:3])})", row=row, kind="near_duplicate"))
            dropped.append((problems[-1], "near_duplicates"))
            continue
        exact[ekey] = where
        bucket.append(where)
        kept.append(row)
    # a duplicate node group that a kept row of its repository calls stays: a material is trained and
    # examined beside the groups it uses, and a repository never spans two splits
    for problem, counter in restore_called(
            kept, dropped, lambda item: _refs(item if isinstance(item, dict) else item[0].row),
            scope=lambda item: (item if isinstance(item, dict) else item[0].row)["repository"]):
        problems.remove(problem)
        stats[counter] -= 1
        kept.append(problem.row)
    for r in kept:
        del r["_name"], r["_calls"]
    for p in problems:
        if isinstance(p.row, dict):
            p.row.pop("_name", None)
            p.row.pop("_calls", None)
    stats["rows"] = len(kept)
    stats["unmapped_reasons"] = dict(sorted(unmapped_reasons.items(), key=lambda kv: -kv[1])[:10])
    assign = split_by_repository(kept, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction)
    for r in kept:
        r["split"] = assign[r["repository"]]
    for name in ("train", "validation", "test"):
        part = [r for r in kept if r["split"] == name]
        stats[name] = {"rows": len(part), "repositories": len({r["repository"] for r in part})}
    result = BuildResult(kept, problems, stats)
    if len(assign) < 3:
        result.notes.append(f"only {len(assign)} repositor{'y' if len(assign) == 1 else 'ies'}: "
                            f"{'no test split' if len(assign) < 2 else 'no validation split'} "
                            f"(a repository never spans two splits)")
    return result


def _refs(row: dict[str, Any]) -> tuple[str | None, list[str]]:
    """(the group a row defines, the groups it calls), from the graph it was written from."""
    return (row["_name"] if row["kind"] == "group" else None), row["_calls"]


def _count(stats: dict[str, Any], reason: str) -> None:
    q = stats["quarantine_reasons"]
    q[reason] = q.get(reason, 0) + 1


def split_by_repository(rows: list[dict[str, Any]], *, seed: int, val_fraction: float = VAL_FRACTION,
                        test_fraction: float = TEST_FRACTION) -> dict[str, str]:
    """repository -> "train" | "validation" | "test". Repositories in a seeded hash order fill test, then
    validation, up to their fractions of the rows (at least one repository each while at least one is
    left for training); the rest train. No repository is ever in two splits."""
    sizes: dict[str, int] = {}
    for r in rows:
        sizes[r["repository"]] = sizes.get(r["repository"], 0) + 1
    order = sorted(sizes, key=lambda repo: hashlib.sha256(f"{seed}\0{repo}".encode()).hexdigest())
    total = sum(sizes.values())
    assign = {repo: "train" for repo in order}
    left = list(order)
    wanted = [(name, f) for name, f in (("test", test_fraction), ("validation", val_fraction)) if f > 0]
    for k, (name, fraction) in enumerate(wanted):
        # one repository for training and, when there are enough, one for each split still to fill (test first)
        keep = max(1, min(len(wanted) - k, len(left) - 1))
        if len(left) <= keep:
            continue
        cap = fraction * total * 1.5  # a little over the fraction beats no repository at all
        got = 0
        for repo in list(left):
            if len(left) <= keep or got >= fraction * total:
                break
            if got + sizes[repo] <= cap:
                left.remove(repo)
                assign[repo] = name
                got += sizes[repo]
        if got == 0:  # every repository is bigger than the share: the smallest one
            repo = min(left, key=lambda r: (sizes[r], left.index(r)))
            left.remove(repo)
            assign[repo] = name
    return assign


# --------------------------------------------------------------------------- writing
def test_lesson(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    test = [r for r in rows if r["split"] == "test"]
    if not test:
        return None
    prompts = [{"id": f"BT_{i:03d}", "category": r.get("kind", "material"), "instruction": r["instruction"],
                "expected_dsl": r["output"], "source": r["source"], "licence": r["licence"],
                "repository": r["repository"]} for i, r in enumerate(test, 1)]
    repos = sorted({r["repository"] for r in test})
    return {"lesson_id": LESSON_ID, "lesson_name": "Held-out Blender materials",
            "description": f"Materials of {len(repos)} repositor{'y' if len(repos) == 1 else 'ies'} that no "
                          f"training row comes from ({', '.join(repos)}); written by `bpllm dataset build`.",
            "holdout": True, "prompts": prompts}


def build(ws: Any, source: str | Path | Sequence[str | Path], *, seed: int | None = None,
          lang: Language | None = None, groups_mode: str = "reference",
          progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Build from SOURCE (a folder, or several built together) into the workspace; returns the report
    (also saved as datasets/generated/)."""

    roots: list[Path] = []
    for src in [source] if isinstance(source, (str, Path)) else list(source):
        folder = Path(src).expanduser()
        if not folder.is_dir():
            raise BuildError(f"--from {src}: not a folder; pass the folder `bpllm scrape github --out` wrote "
                             f"(or any folder of .blend files)")
        if folder.resolve() not in roots:
            roots.append(folder.resolve())
    if not roots:
        raise BuildError("nothing to build from: give a folder of .blend files")
    root = roots[0] if len(roots) == 1 else roots
    language = ws.config.workspace.language
    if language != LANGUAGE:
        raise BuildError(f"{ws.config_path}: [workspace] language is {language!r}; .blend files make "
                         f"{LANGUAGE} rows (build them into a workspace with language = \"{LANGUAGE}\")")
    files = sorted({p for r in roots for p in r.rglob("*.blend") if p.is_file()})
    if not files:
        where = ", ".join(str(r) for r in roots)
        raise BuildError(f"--from {where}: no .blend files in it or below; `bpllm scrape github --out DIR` "
                         f"fetches some")
    d = ws.config.data
    seed = d.seed if seed is None else int(seed)
    res = build_rows(files, root, lang or pack_language(), seed=seed, near_keep=d.near_duplicate_keep,
                     groups_mode=groups_mode, progress=progress)
    train_val = [r for r in res.rows if r["split"] != "test"]
    lesson = test_lesson(res.rows)
    rows_path = ws.sources / ROWS_FILE
    lesson_path = ws.lessons / f"{LESSON_ID}.json"
    atomic_write_jsonl(rows_path, train_val)
    if lesson is not None:
        atomic_write_json(lesson_path, lesson)
    elif lesson_path.exists():
        lesson_path.unlink()  # an older build's test split must not stay an exam of rows now trained on
    qfiles = write_quarantine(ws.quarantine, res.problems, prefix="build-")
    report = {"from": str(roots[0]) if len(roots) == 1 else [str(r) for r in roots], "seed": seed,
              "groups_mode": groups_mode, **res.stats,
              "quarantined": res.stats["invalid"] + res.stats["files_unreadable"],
              "rows_path": str(rows_path), "lesson_path": str(lesson_path) if lesson else None,
              "quarantine_files": sorted(str(p) for p in qfiles.values()), "notes": res.notes}
    atomic_write_json(ws.generated / REPORT_FILE, report)
    return report


def format_report(rep: dict[str, Any]) -> str:
    lines = [f"{rep['files']} .blend file(s) from {rep['from']}: {rep['materials']} material(s), "
             f"{rep['groups']} node group(s) -> {rep['rows']} row(s) (seed {rep['seed']}, groups {rep['groups_mode']}d)"]
    if rep["files_unreadable"]:
        lines.append(f"  {rep['files_unreadable']} file(s) could not be imported")
    if rep["files_without_provenance"]:
        lines.append(f"  {rep['files_without_provenance']} file(s) without metadata: each counts as a repository "
                     f"of its own folder, licence unknown")
    lines.append(f"  skipped: {rep['empty_materials']} empty material(s); removed: {rep['duplicates']} exact and "
                 f"{rep['near_duplicates']} near duplicate(s)")
    lines.append(f"  quarantined: {rep['quarantined']}" + (f" in {', '.join(rep['quarantine_files'])}"
                                                           if rep["quarantine_files"] else ""))
    for reason, n in sorted(rep["quarantine_reasons"].items(), key=lambda kv: -kv[1])[:8]:
        lines.append(f"    {n} x {reason}")
    for name in ("train", "validation", "test"):
        s = rep[name]
        lines.append(f"  {name}: {s['rows']} row(s) from {s['repositories']} repositor"
                     f"{'y' if s['repositories'] == 1 else 'ies'}")
    lines.append(f"  wrote {rep['rows_path']}" + (f" and the held-out exam lesson {rep['lesson_path']}"
                                                   if rep["lesson_path"] else ""))
    if rep["unmapped"]:
        lines.append(f"  {rep['unmapped']} part(s) of the files did not become text (import report): "
                     + "; ".join(f"{n} x {r}" for r, n in list(rep["unmapped_reasons"].items())[:3]))
    lines += [f"  note: {n}" for n in rep["notes"]]
    return "\n".join(lines)
