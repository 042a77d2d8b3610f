"""The engine's own steps: data foundation (1.x), pre-flight (2.x), the backups of 4/6,
lesson integration (8.x) and dashboard & finalize (9.x).  Steps 3-7 come from
engine/ml/steps.py through the same registry.
"""
from __future__ import annotations

import html
import io
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

from dsl.t3d.importer import import_t3d_text
from engine.atomic import atomic_write_json, atomic_write_jsonl, atomic_write_text, read_json, sha256_file
from engine.dataset.build import LANGUAGE as BLEND_LANGUAGE
from engine.dataset.build import BuildError, build
from engine.dataset.export import export as export_rows
from engine.dataset.rows import (
    Problem,
    check_lesson,
    check_row,
    data_hash,
    lesson_rows,
    load_lessons,
    merge_rows,
    read_jsonl,
    source_files,
    write_quarantine,
    write_split,
)
from engine.dataset.scrape import UNAUTH_NOTICE, human_bytes, scrape
from engine.dataset.scrape import Options as ScrapeOptions
from engine.ml.health import lesson_share_alert
from engine.resources import run_engine
from engine.runtime.context import StepContext, StepRegistry
from engine.runtime.failures import DataError
from engine.runtime.reader import describe_skipped, read_events

ML_STEPS_HINT = "the ML steps (engine/ml/steps.py)"
# what steps 1.1/1.2 pick up in [data] exports_dir: UE5 clipboard exports, and .blend files that
# `bpllm dataset build` turns into Blender-material rows (docs/pipeline.md)
EXPORT_SUFFIXES = (".txt", ".t3d", ".blend")


def register_steps(reg: StepRegistry) -> None:
    for sid, fn in (
        ("1.1", analyze_exports), ("1.2", translate_exports), ("1.3", synthetic_data), ("1.4", convert_lessons),
        ("1.5", merge_dedup), ("2.1", validate_dsl_files), ("2.2", validate_merged), ("2.3", system_prompt),
        ("2.4", compute_hash), ("4.1", pre_train_backup), ("4.7", post_train_backup), ("6.7", post_exam_backup),
        ("8.1", load_lessons_step), ("8.2", generate_variations), ("8.3", validate_entries),
        ("8.4", merge_into_dataset), ("8.5", post_merge_backup), ("9.1", collect_metrics),
        ("9.2", generate_charts), ("9.3", build_html), ("9.4", write_dashboard), ("9.5", finalize),
    ):
        reg.register(sid, fn, owner="engine")


def _cycle_state(ctx: StepContext) -> dict[str, Any]:
    return ctx.state.setdefault("cycles", {}).setdefault(str(ctx.cycle), {})


# ------------------------------------------------------------------------ 1.x data foundation
class _LogStream(io.TextIOBase):
    """A text stream for the scraper's progress: each line becomes a log event (the TUI's log shows it,
    the heartbeat moves, so a long rate-limit countdown is no stall) and each write is a stop boundary
    (the scraper checkpoints after every file and before every wait, so stopping there loses nothing)."""

    def __init__(self, ctx: StepContext) -> None:
        self.ctx = ctx
        self.pending = ""

    def isatty(self) -> bool:
        return False

    def write(self, text: str) -> int:
        self.pending += text
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            if line.strip():
                self.ctx.log(line.strip())
        self.ctx.check_stop()
        return len(text)


def _uses_blend(ctx: StepContext, key: str) -> None:
    """.blend sources make Blender-material rows: refuse them (one line, the fix) on another language."""
    if ctx.workspace.language != BLEND_LANGUAGE:
        raise DataError(f"{ctx.workspace.config_path}: [sources] {key} brings .blend files, which make "
                        f"{BLEND_LANGUAGE} rows; this workspace teaches {ctx.workspace.language}",
                        hint=f"remove [sources] {key}, or use a workspace made with "
                             f"`bpllm init DIR --language {BLEND_LANGUAGE}`")


def _scrape(ctx: StepContext) -> dict[str, Any]:
    """[sources] github_query: `bpllm scrape github` into [sources] scrape_dir (it resumes from its checkpoint)."""
    src = ctx.config.sources
    _uses_blend(ctx, "github_query")
    token = os.environ.get("GITHUB_TOKEN") or None
    if not token:
        ctx.log(UNAUTH_NOTICE, "warning")
    opts = ScrapeOptions(query=src.github_query, out=ctx.workspace.root / src.scrape_dir, api=src.api_url.rstrip("/"),
                         max_files=src.max_files, max_size_mb=src.max_size_mb, min_stars=src.min_stars, token=token)
    summary = scrape(opts, stderr=_LogStream(ctx))
    ctx.emit("data", name="scrape", step="1.1", files=summary["files"], pages=summary["pages"],
             bytes=summary["bytes"], complete=summary["complete"], path=summary["out"],
             downloads=summary["this_run"]["downloads"], rejected=len(summary["rejected_files"]))
    ctx.log(f"scrape: {summary['files']} file(s) stored ({human_bytes(summary['bytes'])}), "
            f"{summary['this_run']['downloads']} downloaded now, {len(summary['rejected_files'])} rejected"
            + ("" if summary["complete"] else f"; {summary['stopped'] or 'not complete'}"))
    return {"scraped": summary["files"], "scrape_downloads": summary["this_run"]["downloads"]}


def blend_roots(ctx: StepContext) -> list[Path]:
    """Folders step 1.2 builds .blend rows from (those holding any): the exports folder, [sources]
    scrape_dir and blend_dirs."""
    ws = ctx.workspace
    src = ctx.config.sources
    roots = [ws.exports, ws.root / src.scrape_dir]
    for d in src.blend_dirs:
        folder = (ws.root / Path(d).expanduser()).resolve()
        if not folder.is_dir():
            raise DataError(f"{ws.config_path}: [sources] blend_dirs names {d!r}, which is not a folder",
                            hint="create it, or remove it from the list")
        roots.append(folder)
    return [r for r in roots if r.is_dir() and next(r.rglob("*.blend"), None) is not None]


def _manifest_key(ws: Any, path: Path) -> str:
    """The exports folder's files by name (as ever); other sources by their path in the workspace."""
    if path.parent == ws.exports:
        return path.name
    return str(path.relative_to(ws.root)) if path.is_relative_to(ws.root) else str(path)


def analyze_exports(ctx: StepContext) -> dict[str, Any]:
    ws = ctx.workspace
    src = ctx.config.sources
    out: dict[str, Any] = _scrape(ctx) if src.github_query.strip() else {}
    if src.blend_dirs:
        _uses_blend(ctx, "blend_dirs")
    d = ws.exports
    files = sorted(p for p in d.glob("*") if p.suffix.lower() in EXPORT_SUFFIXES and p.is_file()) if d.is_dir() else []
    for root in blend_roots(ctx):
        if root != ws.exports:
            files += sorted(p for p in root.rglob("*.blend") if p.is_file())
    seen = read_json(ws.generated / "exports_manifest.json", {}) or {}
    # a file whose size and mtime are unchanged keeps its digest: a scrape folder of large .blend files is
    # not read again every cycle
    stat_path = ws.generated / "exports_stat.json"
    known = read_json(stat_path, {}) or {}
    stats: dict[str, list[Any]] = {}
    new = []
    for i, p in enumerate(files, 1):
        key = _manifest_key(ws, p)
        st = p.stat()
        cached = known.get(key)
        digest = cached[2] if cached and cached[:2] == [st.st_size, st.st_mtime_ns] else sha256_file(p)
        stats[key] = [st.st_size, st.st_mtime_ns, digest]
        if seen.get(key) != digest:
            new.append({"name": key, "sha256": digest})
        ctx.progress(i, len(files), unit="file")
    if stats != known:
        atomic_write_json(stat_path, stats, indent=None)
    _cycle_state(ctx)["new_exports"] = new
    return out | {"exports": len(files), "new": len(new)}


def translate_exports(ctx: StepContext) -> dict[str, Any]:
    ws = ctx.workspace
    new = _cycle_state(ctx).get("new_exports")
    if new is None:
        analyze_exports(ctx)
        new = _cycle_state(ctx)["new_exports"]
    if not new:
        return {"translated": 0, "message": "no new exports"}
    blends = [item for item in new if item["name"].lower().endswith(".blend")]
    new = [item for item in new if not item["name"].lower().endswith(".blend")]
    built = _build_blends(ctx, blends, alone=not new) if blends else {}
    if not new:
        return built
    out_dir = ws.generated / "exports"
    manifest = read_json(ws.generated / "exports_manifest.json", {}) or {}
    review, problems = [], []
    for i, item in enumerate(new, 1):
        ctx.check_stop()
        p = ws.exports / item["name"]
        text = p.read_text(encoding="utf-8", errors="replace")
        res = import_t3d_text(text, source=p.name)
        if res.ok:
            atomic_write_text(out_dir / f"{p.stem}.dsl", res.dsl_text.rstrip() + "\n")
            review.append(res.training_row())
        else:
            problems.append(Problem(str(p.relative_to(ws.root)), None, "translation does not validate",
                                    [d.to_dict() for d in res.diagnostics], {"dsl": res.dsl_text}))
        manifest[item["name"]] = item["sha256"]
        ctx.progress(i, len(new), unit="export")
    # translated graphs have no real instruction yet: they wait for review, they are not training rows
    prev = [r for _n, r, _e in read_jsonl(ws.generated / "exports_review.jsonl") if r] \
        if (ws.generated / "exports_review.jsonl").exists() else []
    atomic_write_jsonl(ws.generated / "exports_review.jsonl", prev + review)
    write_quarantine(ws.quarantine, problems, prefix="exports-") if problems else None
    atomic_write_json(ws.generated / "exports_manifest.json", manifest)
    return {"translated": len(review), "invalid": len(problems)} | built


def _build_blends(ctx: StepContext, new: list[dict[str, Any]], alone: bool) -> dict[str, Any]:
    """New .blend files (exports folder, [sources] scrape_dir and blend_dirs): `bpllm dataset build` over
    all of them together (its rows, repository splits and held-out lesson are rewritten together), then
    the manifest records them.
    When it cannot build, the files wait (reported); T3D exports beside them are still translated."""
    ws = ctx.workspace

    def progress(msg: str) -> None:
        ctx.check_stop()  # nothing is written before the end of a build: a safe boundary
        ctx.log(msg)

    try:
        rep = build(ws, blend_roots(ctx), progress=progress)
    except BuildError as exc:
        reason = f"{len(new)} new .blend file(s) in {ws.exports} wait: {exc}"
        if alone:
            ctx.skip(reason)
        ctx.log(reason, "warning")
        return {"blend_waiting": len(new), "blend_reason": str(exc)}
    manifest = read_json(ws.generated / "exports_manifest.json", {}) or {}
    manifest.update({item["name"]: item["sha256"] for item in new})
    atomic_write_json(ws.generated / "exports_manifest.json", manifest)
    ctx.emit("data", name="blend_build", rows=rep["rows"], quarantined=rep["quarantined"],
             train=rep["train"]["rows"], validation=rep["validation"]["rows"],
             path=rep["rows_path"], step="1.2")
    return {"blend_files": rep["files"], "materials": rep["materials"], "blend_rows": rep["rows"],
            "blend_quarantined": rep["quarantined"], "blend_test": rep["test"]["rows"]}


def synthetic_data(ctx: StepContext) -> dict[str, Any]:
    scfg = ctx.config.synthetic
    if not scfg.enabled:
        ctx.skip("disabled in bpllm.toml (synthetic.enabled = false)")
    pack = ctx.workspace.pack  # the workspace's language brings its own generator
    if not pack.has("synthesize"):
        ctx.skip(f"the {pack.name} language pack has no synthetic generator")
    count, seed = scfg.count, scfg.seed
    rows = pack.synthesize(count, seed)
    out = []
    for r in rows:
        r = r.to_dict() if hasattr(r, "to_dict") else dict(r)
        r.setdefault("source", "synthetic")
        out.append(r)
    path = ctx.workspace.generated / "synthetic.jsonl"
    atomic_write_jsonl(path, out)
    ctx.emit("data", name="synthetic", rows=len(out), path=str(path), step="1.3")
    return {"rows": len(out), "seed": seed}


def _integrated_ids(ctx: StepContext, lessons: list[Any]) -> list[str]:
    ids = set(ctx.history.integrated_lessons())
    if ctx.config.data.integrate == "all":
        ids |= {lesson.id for lesson in lessons if not lesson.holdout}
    return sorted(ids)


def _write_lesson_rows(ctx: StepContext, lesson_ids: list[str]) -> tuple[int, int]:
    """Regenerate datasets/generated/lessons.jsonl from the integrated lessons (edits propagate)."""
    ws = ctx.workspace
    lessons, _problems = load_lessons(ws.lesson_files())
    by_id = {lesson.id: lesson for lesson in lessons}
    dcfg = ctx.config.data
    rows: list[dict[str, Any]] = []
    n_prompts = 0
    for lid in lesson_ids:
        lesson = by_id.get(lid)
        if lesson is None:
            ctx.log(f"integrated lesson {lid} no longer exists in {ws.lessons}; its rows are dropped from "
                    f"training", "warning")
            continue
        good, _bad = check_lesson(lesson, ctx.config.dsl.unknown_nodes, ctx.workspace.language)
        n_prompts += len(good)
        rows += lesson_rows(lesson, good, dcfg.variations, dcfg.seed)
    path = ws.generated / "lessons.jsonl"
    if rows:
        atomic_write_jsonl(path, rows)
    elif path.exists():
        path.unlink()
    return n_prompts, len(rows)


def convert_lessons(ctx: StepContext) -> dict[str, Any]:
    lessons, _ = load_lessons(ctx.workspace.lesson_files())
    ids = _integrated_ids(ctx, lessons)
    prompts, rows = _write_lesson_rows(ctx, ids)
    return {"lessons": len(ids), "prompts": prompts, "rows": rows}


def _merge(ctx: StepContext, step: str) -> dict[str, Any]:
    ws = ctx.workspace
    dcfg = ctx.config.data
    files = source_files(ws)
    total = sum(1 for f in files for line in open(f, "rb") if line.strip())

    def progress(n: int) -> None:  # every 200 rows: a safe boundary too (nothing is written before the end)
        ctx.check_stop()
        ctx.progress(n, total, unit="row")

    result = merge_rows(files, root=ws.root, near_keep=dcfg.near_duplicate_keep,
                        val_fraction=dcfg.validation_fraction, min_val=dcfg.min_validation,
                        seed=dcfg.seed, progress=progress, unknown_nodes=ctx.config.dsl.unknown_nodes,
                        language=ctx.workspace.language)
    ctx.progress(total, total, unit="row")
    qfiles = write_quarantine(ws.quarantine, result.problems, prefix="merge-")
    write_split(ws, result)
    st = result.stats
    bad = [p for p in result.problems if p.kind in ("invalid", "malformed")]
    for p in bad[:10]:
        ctx.log(f"quarantined {p}", "warning")
    if len(bad) > 10:
        ctx.log(f"... and {len(bad) - 10} more quarantined rows; see {ws.quarantine}", "warning")
    ctx.emit("data", name="merged", rows=st["rows"], valid=st["valid"], invalid=st["invalid"] + st["malformed"],
             quarantined=st["quarantined"], duplicates=st["duplicates"], near_duplicates=st["near_duplicates"],
             train=st["train"], validation=st["validation"], path=str(ws.train_path),
             quarantine_path=str(ws.quarantine), sources=st["sources"], step=step)
    return {k: st[k] for k in ("rows", "valid", "quarantined", "duplicates", "near_duplicates", "train",
                               "validation")} | {"quarantine_files": sorted(qfiles)}


def merge_dedup(ctx: StepContext) -> dict[str, Any]:
    if not source_files(ctx.workspace):
        raise DataError(f"no datasets to merge: put JSONL rows ({{instruction, output}}) under "
                        f"{ctx.workspace.sources} or enable the synthetic generator",
                        hint="`bpllm import-blueprintllm PATH` brings the reference project's datasets in")
    out = _merge(ctx, "1.5")
    if ctx.config.sources.export_formats:
        out["exports"] = _write_exports(ctx)
    return out


def _write_exports(ctx: StepContext) -> dict[str, int]:
    """[sources] export_formats: `bpllm dataset export` of the merged train and validation splits, one
    folder per format under [sources] export_dir (each file written atomically)."""
    ws = ctx.workspace
    base = ws.root / ctx.config.sources.export_dir
    written: dict[str, int] = {}
    for fmt in ctx.config.sources.export_formats:
        for split in ("train", "val"):
            ctx.check_stop()
            rep = export_rows(ws, fmt, base / fmt / f"{split}.jsonl", split=split)
            written[f"{fmt}/{split}"] = rep["rows"]
            ctx.artifact("export", rep["out"], f"{fmt} {split}: {rep['rows']} rows, {rep['tokens']['total']} tokens "
                         f"({rep['tokens']['method']})", format=fmt, split=split, rows=rep["rows"])
    ctx.emit("data", name="export", step="1.5", path=str(base), files=written)
    return written


# ------------------------------------------------------------------------ 2.x pre-flight
def validate_dsl_files(ctx: StepContext) -> dict[str, Any]:
    ws = ctx.workspace
    files = ws.lesson_files()
    lessons, problems = load_lessons(files)
    unsafe = [p for p in problems if p.kind == "unsafe_id"]
    if unsafe:  # refuse now, not when step 6.3 builds exam_<id>.jsonl from it
        raise DataError("; ".join(str(p) for p in unsafe[:5]) + (f" (and {len(unsafe) - 5} more)" if len(unsafe) > 5
                                                                 else ""),
                        hint="a lesson id names files (exams, drafts): fix the lesson_id, then `bpllm resume`")
    n_valid = n_prompts = 0
    for i, lesson in enumerate(lessons, 1):
        ctx.check_stop()
        good, bad = check_lesson(lesson, ctx.config.dsl.unknown_nodes, ctx.workspace.language)
        n_prompts += len(lesson.prompts)
        n_valid += len(good)
        problems += bad
        ctx.progress(i, len(lessons), lesson.id, unit="lesson")
    real = [p for p in problems if p.kind != "warning"]
    for p in problems[:20]:
        ctx.log(f"lesson problem: {p}", "error" if p.kind == "malformed" else "warning")
    if len(problems) > 20:
        ctx.log(f"... and {len(problems) - 20} more lesson problems; see {ws.quarantine / 'lessons.jsonl'}", "warning")
    qpath = ws.quarantine / "lessons.jsonl"
    if real:
        atomic_write_jsonl(qpath, [p.to_dict() for p in real])
    elif qpath.exists():
        qpath.unlink()
    ctx.emit("data", name="lessons", lessons=len(lessons), prompts=n_prompts, valid=n_valid,
             invalid=n_prompts - n_valid, quarantined=len(real), quarantine_path=str(qpath) if real else None,
             step="2.1")
    return {"lessons": len(lessons), "unreadable": len(files) - len(lessons), "prompts": n_prompts,
            "valid": n_valid}


def validate_merged(ctx: StepContext) -> dict[str, Any]:
    ws = ctx.workspace
    if not ws.train_path.exists():
        raise DataError(f"{ws.train_path} does not exist; run step 1 first (`bpllm run --only 1,2`)")
    rows = []
    bad = 0
    for path in (ws.train_path, ws.validation_path):
        if not path.exists():
            continue
        for n, row, err in read_jsonl(path):
            if row is None or check_row(row, ctx.config.dsl.unknown_nodes, ctx.workspace.language)[0] is not None:
                bad += 1
                ctx.log(f"{path.name}:{n}: {err or check_row(row, ctx.config.dsl.unknown_nodes, ctx.workspace.language)[0]}", "error")
                continue
            rows.append(row)
    if bad:
        raise DataError(f"{bad} invalid row(s) in the merged dataset (was it edited by hand?); "
                        f"re-run step 1.5 to rebuild it")
    if not rows:
        raise DataError("the merged dataset is empty: every row was quarantined or there are none; "
                        f"see {ws.quarantine}")
    judged = _tool_check(ctx)
    if judged.get("rejected_rows"):
        rows = [r for path in (ws.train_path, ws.validation_path) if path.exists()
                for _n, r, _e in read_jsonl(path) if r is not None]
    manifest = read_json(ws.datasets / "manifest.json", {}) or {}
    total = max(1, int(manifest.get("rows") or len(rows)))
    dup_share = (int(manifest.get("duplicates", 0)) + int(manifest.get("near_duplicates", 0))) / total
    if dup_share > 0.05:
        ctx.health("duplicates", "warning", f"{dup_share:.0%} of the source rows were duplicates "
                                            f"(removed; listed in datasets/quarantine/merge-duplicates.jsonl)",
                   value=round(dup_share, 4), threshold=0.05, key="data.duplicates")

    alert = lesson_share_alert(rows)
    if alert:
        ctx.health(alert["check"], alert["severity"], alert["message"], value=alert["value"],
                   threshold=alert["threshold"], key="data.lesson_share")
    return {"rows": len(rows), "duplicate_share": round(dup_share, 4)} | judged


_LINE = re.compile(r"line ([0-9]+)\)?$")


def _tool_check(ctx: StepContext) -> dict[str, Any]:
    """The language's own tool judges the merged rows and the lessons (Blender builds every material
    text), in a child process (bpy never shares the engine's process with torch). Rows it rejects leave
    the split files for datasets/quarantine/tool-*.jsonl with its reasons; a lesson gold it rejects is
    reported. Nothing happens when the pack has no tool here."""
    ws = ctx.workspace
    args = ws.pack.tool_check_args()
    if not args:
        return {}
    splits = [p for p in (ws.train_path, ws.validation_path) if p.exists()]
    lessons = ws.lesson_files()
    try:
        proc = run_engine(*args, *map(str, splits + lessons), cwd=ws.root, timeout=1800)
        report = json.loads(proc.stdout)
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        tail = (getattr(exc, "stderr", "") or "").strip().splitlines()[-1:] or [str(exc)]
        ctx.log(f"{ws.pack.name}: its own tool could not judge the texts ({tail[0]}); the catalog's checks stand",
                "warning")
        return {"tool_check": "failed"}
    rejected: dict[Path, dict[int, list[str]]] = {}
    lesson_problems: list[str] = []
    for entry in report.get("files", []):
        path = Path(entry["path"])
        for item in entry.get("items", []):
            if item.get("valid", True):
                continue  # every row here already passed the catalog: an error now is the tool's verdict
            tool = [d["message"] for d in item.get("diagnostics", []) if d.get("severity") == "error"]
            m = _LINE.search(str(item.get("id", "")))
            if path in splits and m:
                rejected.setdefault(path, {})[int(m.group(1))] = tool
            else:
                lesson_problems.append(f"{path.name}:{item.get('id')}: {tool[0]}")
    problems: list[Problem] = []
    for path, lines in rejected.items():
        keep = []
        for n, row, _err in read_jsonl(path):
            if n in lines:
                problems.append(Problem(str(path.relative_to(ws.root)), n, "; ".join(lines[n]), row=row))
            elif row is not None:
                keep.append(row)
        atomic_write_jsonl(path, keep)
    write_quarantine(ws.quarantine, problems, prefix="tool-")
    for p in problems[:10]:
        ctx.log(f"quarantined (rejected by {ws.pack.name}'s tool) {p}", "warning")
    for line in lesson_problems[:10]:
        ctx.log(f"lesson gold rejected by {ws.pack.name}'s tool: {line}", "warning")
    ctx.emit("data", name="tool_check", step="2.2", rows=sum(len(v) for v in rejected.values()),
             quarantined=len(problems), lessons=len(lesson_problems),
             quarantine_path=str(ws.quarantine) if problems else None)
    return {"tool_checked": True, "rejected_rows": len(problems), "rejected_lesson_golds": len(lesson_problems)}


def system_prompt(ctx: StepContext) -> dict[str, Any]:
    ws = ctx.workspace
    src = ws.system_prompt_path
    try:
        text = src.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"system prompt {src} not found; set data.system_prompt in {ws.config_path} "
                        f"or restore the file (`bpllm init` writes a starter one)") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"system prompt {src} is not UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise DataError(f"system prompt {src} is empty")
    dst = ws.datasets / "system_prompt.txt"
    changed = not dst.exists() or dst.read_text(encoding="utf-8") != text
    if changed:
        atomic_write_text(dst, text)
    return {"chars": len(text), "changed": changed, "path": str(dst)}


def compute_hash(ctx: StepContext) -> dict[str, Any]:
    ws = ctx.workspace
    h = data_hash([ws.train_path, ws.validation_path, ws.datasets / "system_prompt.txt"])
    manifest = read_json(ws.datasets / "manifest.json", {}) or {}
    previous = ctx.history.last_data_hash()
    ctx.history.add_data_snapshot(h, ctx.run_id, manifest)
    changed = previous != h
    ctx.state["data_hash"] = h
    ctx.emit("data", name="hash", hash=h, changed=changed, train=manifest.get("train"),
             validation=manifest.get("validation"), step="2.4")
    return {"hash": h, "changed": changed, "previous": previous}


# ------------------------------------------------------------------------ backups inside ML groups
def _has_ml(ctx: StepContext, *ids: str) -> bool:
    reg = ctx.cache.get("registry")
    return reg is not None and any(i in reg for i in ids)


def _done(ctx: StepContext, sid: str) -> bool:
    return ctx.cache.get("done", {}).get(f"{ctx.cycle}:{sid}") == "complete"


def pre_train_backup(ctx: StepContext) -> dict[str, Any]:
    if not _has_ml(ctx, "4.3"):
        ctx.skip(f"no training step is registered ({ML_STEPS_HINT}); nothing to protect")
    return ctx.backup("pre_train", label=f"c{ctx.cycle}")


def post_train_backup(ctx: StepContext) -> dict[str, Any]:
    if not _has_ml(ctx, "4.3"):
        ctx.skip(f"no training step is registered ({ML_STEPS_HINT})")
    return ctx.backup("milestone", label=f"c{ctx.cycle}-trained")


def post_exam_backup(ctx: StepContext) -> dict[str, Any]:
    if not _has_ml(ctx, "6.3"):
        ctx.skip(f"no exam step is registered ({ML_STEPS_HINT})")
    return ctx.backup("scheduled", label=f"c{ctx.cycle}-exam")


# ------------------------------------------------------------------------ 8.x lesson integration
def load_lessons_step(ctx: StepContext) -> dict[str, Any]:
    ws = ctx.workspace
    lessons, problems = load_lessons(ws.lesson_files())
    for p in problems:
        ctx.log(f"lesson not loaded: {p}", "error" if p.kind == "malformed" else "warning")
    integrated = set(ctx.history.integrated_lessons())
    policy = ctx.config.data.integrate
    if policy == "none":
        candidates: set[str] = set()
    elif policy == "all":
        candidates = {lesson.id for lesson in lessons}
    else:
        candidates = ctx.history.examined_lessons()
    todo = sorted(lesson.id for lesson in lessons
                  if lesson.id in candidates and lesson.id not in integrated and not lesson.holdout)
    _cycle_state(ctx)["integrate"] = todo
    held = sorted(lesson.id for lesson in lessons if lesson.holdout)
    msg = (f"{len(todo)} lesson(s) to integrate ({', '.join(todo)})" if todo else
           f"no new lesson to integrate (policy data.integrate = {policy!r})")
    ctx.log(msg)
    return {"lessons": len(lessons), "to_integrate": todo, "integrated_before": len(integrated), "holdout": held,
            "policy": policy}


def _integration_file(ctx: StepContext) -> Path:
    return ctx.run_dir / f"integration-c{ctx.cycle}.jsonl"


def generate_variations(ctx: StepContext) -> dict[str, Any]:
    cs = _cycle_state(ctx)
    if "integrate" not in cs:
        load_lessons_step(ctx)
    todo = cs["integrate"]
    lessons, _ = load_lessons(ctx.workspace.lesson_files())
    by_id = {lesson.id: lesson for lesson in lessons}
    dcfg = ctx.config.data
    rows = []
    for i, lid in enumerate(todo, 1):
        ctx.check_stop()
        lesson = by_id[lid]
        good, _bad = check_lesson(lesson, ctx.config.dsl.unknown_nodes, ctx.workspace.language)
        rows += lesson_rows(lesson, good, dcfg.variations, dcfg.seed)
        ctx.progress(i, len(todo), lid, unit="lesson")
    atomic_write_jsonl(_integration_file(ctx), rows)
    return {"rows": len(rows), "variations_per_prompt": dcfg.variations}


def validate_entries(ctx: StepContext) -> dict[str, Any]:
    path = _integration_file(ctx)
    if not path.exists():
        generate_variations(ctx)
    problems, ok = [], 0
    for n, row, err in read_jsonl(path):
        reason = err if row is None else check_row(row, ctx.config.dsl.unknown_nodes, ctx.workspace.language)[0]
        if reason:
            problems.append(Problem(str(path.name), n, reason, row=row))
        else:
            ok += 1
    if problems:
        write_quarantine(ctx.workspace.quarantine, problems, prefix="integration-")
        for p in problems[:10]:
            ctx.log(f"integration entry quarantined: {p}", "warning")
    return {"valid": ok, "invalid": len(problems)}


def merge_into_dataset(ctx: StepContext) -> dict[str, Any]:
    cs = _cycle_state(ctx)
    if "integrate" not in cs:
        load_lessons_step(ctx)
    todo = cs["integrate"]
    ws = ctx.workspace
    lessons, _ = load_lessons(ws.lesson_files())
    by_id = {lesson.id: lesson for lesson in lessons}
    ids = sorted(set(_integrated_ids(ctx, lessons)) | set(todo))
    prompts, rows = _write_lesson_rows(ctx, ids)
    for lid in todo:
        good, _ = check_lesson(by_id[lid], ctx.config.dsl.unknown_nodes, ctx.workspace.language)
        ctx.history.integrate_lesson(lid, ctx.run_id, len(good), len(good) * (1 + ctx.config.data.variations),
                                     by_id[lid].digest())
    stats = _merge(ctx, "8.4") if source_files(ws) else {}
    return {"integrated": todo, "lessons_in_training": len(ids), "lesson_rows": rows} | \
        {k: stats.get(k) for k in ("train", "validation")}


def post_merge_backup(ctx: StepContext) -> dict[str, Any]:
    if not _cycle_state(ctx).get("integrate"):
        ctx.skip("no lesson was integrated this cycle; the last backup still covers the data")
    return ctx.backup("scheduled", label=f"c{ctx.cycle}-merged")


# ------------------------------------------------------------------------ 9.x dashboard & finalize
def _dash_dir(ctx: StepContext) -> Path:
    return ctx.run_dir / "dashboard"


def collect_metrics(ctx: StepContext) -> dict[str, Any]:
    ws = ctx.workspace
    batch = read_events(ctx.run_dir)
    if batch.malformed:
        ctx.log(describe_skipped(batch.malformed), level="warning")
    train = [e for e in batch.events if e["type"] == "train" and e.get("loss") is not None
             and e.get("phase") != "base"]  # the tiny base's pretraining is not a version's training
    evals = [e for e in batch.events if e["type"] == "eval" and e.get("eval_loss") is not None]
    summaries = [e for e in batch.events if e["type"] == "exam_summary"]
    versions = ctx.history.versions()
    latest = versions[-1]["version"] if versions else None
    metrics = {
        "run_id": ctx.run_id, "cycle": ctx.cycle, "profile": ctx.profile, "collected_at": time.time(),
        "data": read_json(ws.datasets / "manifest.json", {}) or {}, "data_hash": ctx.state.get("data_hash"),
        "train": [{"step": e["step"], "loss": e["loss"], "epoch": e.get("epoch")} for e in train],
        "eval": [{"step": e["step"], "eval_loss": e["eval_loss"]} for e in evals],
        "exam": [{k: e.get(k) for k in ("lesson_id", "version", "n", "avg_score", "valid_pct", "seen", "unseen")}
                 for e in summaries],
        "versions": [{"version": v["version"], "profile": v["profile"], "data_hash": v["data_hash"],
                      "metrics": json.loads(v["metrics_json"] or "{}")} for v in versions],
        "mastery": ctx.history.mastery(latest) if latest else [],
        "alerts": [{k: a[k] for k in ("check_name", "severity", "message", "count")} for a in ctx.history.alerts()],
        "steps": dict(ctx.cache.get("done", {})),
    }
    atomic_write_json(_dash_dir(ctx) / "metrics.json", metrics)
    return {"train_points": len(train), "eval_points": len(evals), "exam_lessons": len(summaries),
            "versions": len(versions)}


def _svg_chart(series: list[tuple[str, list[tuple[float, float]], str]], title: str, w: int = 640,
               h: int = 240) -> str:
    pts = [p for _n, s, _c in series for p in s]
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">'
            f'<rect width="100%" height="100%" fill="#11151c"/>'
            f'<text x="12" y="20" fill="#c9d1d9" font-family="monospace" font-size="13">{html.escape(title)}</text>')
    if not pts:
        return head + (f'<text x="{w // 2}" y="{h // 2}" fill="#8b949e" font-family="monospace" font-size="12" '
                       f'text-anchor="middle">no data in this run</text></svg>')
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(p[1] for p in pts), max(p[1] for p in pts)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + 1e-9)
    L, R, T, B = 48, 12, 30, 24

    def sx(x: float) -> float:
        return L + (x - x0) / (x1 - x0) * (w - L - R)

    def sy(y: float) -> float:
        return h - B - (y - y0) / (y1 - y0) * (h - T - B)

    body = [f'<text x="4" y="{T + 8}" fill="#8b949e" font-family="monospace" font-size="10">{y1:.3g}</text>',
            f'<text x="4" y="{h - B}" fill="#8b949e" font-family="monospace" font-size="10">{y0:.3g}</text>']
    for i, (name, s, color) in enumerate(series):
        if not s:
            continue
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in s)
        body.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{path}"/>')
        body.append(f'<text x="{w - 150}" y="{20 + 14 * i}" fill="{color}" font-family="monospace" '
                    f'font-size="11">{html.escape(name)}</text>')
    return head + "".join(body) + "</svg>"


def generate_charts(ctx: StepContext) -> dict[str, Any]:
    m = read_json(_dash_dir(ctx) / "metrics.json") or {}
    train = [(float(p["step"]), float(p["loss"])) for p in m.get("train", [])]
    evals = [(float(p["step"]), float(p["eval_loss"])) for p in m.get("eval", [])]
    svg = _svg_chart([("train loss", train, "#58a6ff"), ("eval loss", evals, "#f0883e")], "Loss")
    atomic_write_text(_dash_dir(ctx) / "loss.svg", svg)
    return {"charts": 1, "points": len(train) + len(evals)}


def build_html(ctx: StepContext) -> dict[str, Any]:
    d = _dash_dir(ctx)
    m = read_json(d / "metrics.json") or {}
    svg = (d / "loss.svg").read_text(encoding="utf-8") if (d / "loss.svg").exists() else ""
    e = html.escape

    def table(rows: list[dict[str, Any]], cols: list[str]) -> str:
        if not rows:
            return "<p class=dim>none</p>"
        head = "".join(f"<th>{e(c)}</th>" for c in cols)
        body = "".join("<tr>" + "".join(f"<td>{e(str(r.get(c, '')))}</td>" for c in cols) + "</tr>" for r in rows)
        return f"<table><tr>{head}</tr>{body}</table>"

    data = m.get("data", {})
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>bpllm run {e(ctx.run_id)}</title>
<style>body{{background:#0d1117;color:#c9d1d9;font-family:monospace;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #30363d;padding:2px 8px}}.dim{{color:#8b949e}}</style></head><body>
<h1>bpllm — run {e(ctx.run_id)} (cycle {ctx.cycle}, profile {e(ctx.profile)})</h1>
<h2>Data</h2><p>{data.get('train', 0)} train / {data.get('validation', 0)} validation rows;
{data.get('quarantined', 0)} quarantined; {data.get('duplicates', 0)} exact + {data.get('near_duplicates', 0)}
near duplicates removed; hash {e(str(m.get('data_hash')))}</p>
<h2>Loss</h2>{svg}
<h2>Exam</h2>{table(m.get('exam', []), ['lesson_id', 'version', 'n', 'avg_score', 'valid_pct'])}
<h2>Node mastery</h2>{table(m.get('mastery', []), ['node', 'score', 'n', 'band', 'delta'])}
<h2>Versions</h2>{table(m.get('versions', []), ['version', 'profile', 'data_hash'])}
<h2>Health alerts</h2>{table(m.get('alerts', []), ['check_name', 'severity', 'message', 'count'])}
</body></html>
"""
    atomic_write_text(d / "index.html", page)
    return {"bytes": len(page)}


def write_dashboard(ctx: StepContext) -> dict[str, Any]:
    src = _dash_dir(ctx) / "index.html"
    if not src.exists():
        build_html(ctx)
    dst_dir = ctx.workspace.dashboard
    atomic_write_text(dst_dir / "index.html", src.read_text(encoding="utf-8"))
    if (_dash_dir(ctx) / "metrics.json").exists():
        atomic_write_text(dst_dir / "metrics.json", (_dash_dir(ctx) / "metrics.json").read_text(encoding="utf-8"))
    ctx.artifact("dashboard", dst_dir / "index.html", "open in a browser")
    return {"path": str(dst_dir / "index.html")}


def finalize(ctx: StepContext) -> dict[str, Any]:
    cs = _cycle_state(ctx)
    cs["completed_at"] = time.time()
    ctx.save_state()
    ctx.log(f"cycle {ctx.cycle} complete (run {ctx.run_id})")
    return {"cycle": ctx.cycle}
