"""`bpllm init | run | stop | resume | status | runs | leakage | import-blueprintllm | backup |
backups | restore | gpus` — the engine runtime's commands.

Every command takes ``--workspace/-w DIR`` (default: $BPLLM_WORKSPACE, else the
current directory).  ``--json`` outputs are a contract the TUI and tests parse.
Exit codes: 0 ok / done, 1 failed or refused, 2 a run stopped on request.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from engine.atomic import read_json
from engine.dataset.importer import import_blueprintllm
from engine.dataset.leakage import leakage_report
from engine.runtime.events import pid_alive, write_stop_request
from engine.runtime.orchestrator import Runner
from engine.runtime.plan import load_plan
from engine.runtime.reader import engine_liveness, load_run_state
from engine.runtime.telemetry import sample
from engine.workspace.backup import create_backup, find_backup, list_backups, restore_backup, verify_backup
from engine.workspace.config import profile_problem
from engine.workspace.lock import WorkspaceLock, lock_holder
from engine.workspace.workspace import init_workspace, resolve_workspace


def _ws_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-w", "--workspace", metavar="DIR",
                   help="workspace directory (default: $BPLLM_WORKSPACE, else the current directory)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("init", help="create a workspace (config, starter lessons and data, history store)")
    p.add_argument("dir", nargs="?", help="directory to create (default: --workspace or the current directory)")
    _ws_arg(p)
    p.add_argument("--pipeline-config", metavar="JSON",
                   help="import the reference project's pipeline_config.json into bpllm.toml")
    p.add_argument("--force", action="store_true", help="rewrite bpllm.toml of an existing workspace")
    p.add_argument("--language", metavar="NAME",
                   help="the language pack to teach (default: blueprint; `bpllm languages` lists them)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("run", help="run teaching cycles (steps 1-9) headless")
    _ws_arg(p)
    p.add_argument("--profile", help="training profile (default: run.profile in bpllm.toml)")
    p.add_argument("--cycles", type=int, help="number of cycles (default: run.cycles)")
    p.add_argument("--only", metavar="STEPS", help="comma-separated groups or steps, e.g. 1,2,8,9 or 4.3")
    p.add_argument("--from", dest="from_step", metavar="STEP", help="start at this step (e.g. 6 or 6.3)")
    p.add_argument("--events-stdout", action="store_true",
                   help="mirror JSON events on stdout (console lines go to stderr)")
    p.add_argument("--quiet", "-q", action="store_true", help="no console lines (they still go to console.log); a failed run still prints its one line on stderr")
    p.add_argument("--list-steps", action="store_true", help="print the step plan and exit")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("resume", help="resume a stopped, failed or killed run from its first incomplete step")
    p.add_argument("run", nargs="?", help="run id (default: the latest unfinished run)")
    _ws_arg(p)
    p.add_argument("--events-stdout", action="store_true")
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("stop", help="ask the running engine to stop gracefully (at the next safe boundary)")
    p.add_argument("run", nargs="?", help="run id (default: the active run)")
    _ws_arg(p)
    p.add_argument("--wait", action="store_true", help="wait until the engine has exited")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait with --wait")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("status", help="state of the active (or latest) run")
    p.add_argument("run", nargs="?", help="run id (default: the active run, else the latest)")
    _ws_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("runs", help="list runs of the workspace")
    _ws_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("leakage", help="which exam prompts appear in the training data (seen/unseen)")
    _ws_arg(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--lesson", action="append", help="only these lesson ids (repeatable)")
    p.set_defaults(func=cmd_leakage)

    p = sub.add_parser("import-blueprintllm", help="import the reference project's lessons and datasets")
    p.add_argument("path", help="BlueprintLLM project directory (with lessons/ and datasets/)")
    _ws_arg(p)
    p.add_argument("--system-prompt", action="store_true", help="also replace the workspace system prompt")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("backup", help="take a verified backup of the workspace")
    _ws_arg(p)
    p.add_argument("--tier", default="milestone", choices=["milestone", "pre_train", "scheduled"])
    p.add_argument("--label", help="a short label in the backup's name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("backups", help="list backups")
    _ws_arg(p)
    p.add_argument("--json", action="store_true")
    p.add_argument("--verify", action="store_true", help="check every file's SHA-256")
    p.set_defaults(func=cmd_backups)

    p = sub.add_parser("restore", help="restore a backup (verifies hashes first; takes a safety backup)")
    p.add_argument("name", help="backup name (see `bpllm backups`)")
    _ws_arg(p)
    p.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=cmd_restore)

    p = sub.add_parser("gpus", help="GPUs (NVML), CPU and RAM as the engine sees them")
    _ws_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_gpus)


# ---------------------------------------------------------------------------- helpers
def _err(msg: str) -> int:
    print(msg, file=sys.stderr)
    return 1


def _workspace(args: argparse.Namespace):  # -> Workspace; WorkspaceError/ConfigError reach engine.cli.main

    ws = resolve_workspace(getattr(args, "workspace", None))
    _ = ws.config  # validate now: every command reports a bad config the same way
    return ws


def _dump(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str, ensure_ascii=False) + "\n")


def _fmt_time(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


# ---------------------------------------------------------------------------- commands
def cmd_init(args: argparse.Namespace) -> int:
    import os


    target = args.dir or args.workspace or os.environ.get("BPLLM_WORKSPACE") or os.getcwd()
    try:
        ws, notes = init_workspace(target, pipeline_config=args.pipeline_config, force=args.force,
                                   language=args.language)
    except FileNotFoundError as exc:  # --pipeline-config names no file (WorkspaceError, ConfigError: main)
        return _err(f"bpllm init: {exc}")
    print(f"workspace ready: {ws.root}")
    for n in notes:
        print(f"  - {n}")
    print(f"backups: set [backup] mirror = \"/path/on/another/disk\" in {ws.config_path} to copy every backup "
          "there too (none yet: `bpllm status` warns until it is set)")
    print(f"next: bpllm run -w {ws.root}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    if args.list_steps:
        for s in load_plan().steps:
            print(f"{'' if s.is_group else '  '}{s.id:<4} {s.name:<28} {s.phase:<9} {s.owner}")
        return 0
    ws = _workspace(args)

    if args.cycles is not None and args.cycles < 1:
        return _err("bpllm run: --cycles must be at least 1")
    if args.profile:
        problem = profile_problem(ws.config, args.profile)
        if problem:
            return _err(f"bpllm run: --profile {args.profile}: {problem}")
    return Runner(ws, events_stdout=args.events_stdout, quiet=args.quiet).start(
        profile=args.profile, cycles=args.cycles, only=args.only, from_step=args.from_step)


def cmd_resume(args: argparse.Namespace) -> int:
    ws = _workspace(args)

    return Runner(ws, events_stdout=args.events_stdout, quiet=args.quiet).resume(args.run)


def _active_run(ws) -> dict[str, Any] | None:
    holder = lock_holder(ws.lock_path)
    return holder if holder and holder.get("run_id") else None


def cmd_stop(args: argparse.Namespace) -> int:
    ws = _workspace(args)

    active = _active_run(ws)
    run_id = args.run or (active or {}).get("run_id")
    if not run_id:
        return _err("bpllm stop: no run is active in this workspace (nothing to stop)")
    if active is None or active.get("run_id") != run_id:
        return _err(f"bpllm stop: run {run_id} is not running (see `bpllm status`)")
    write_stop_request(ws.run_dir(run_id), source="cli")
    print(f"stop requested for run {run_id} (pid {active.get('pid')}); "
          f"it stops at the next safe boundary and exits with code 2")
    if args.wait:
        deadline = time.time() + args.timeout
        while time.time() < deadline and pid_alive(active.get("pid")):
            time.sleep(0.2)
        if pid_alive(active.get("pid")):
            return _err(f"bpllm stop: run {run_id} still running after {args.timeout:.0f}s")
        print(f"run {run_id} has stopped")
    return 0


def _status_obj(ws, run_id: str | None) -> dict[str, Any] | None:
    active = _active_run(ws)
    if run_id is None:
        run_id = (active or {}).get("run_id") or (ws.run_ids()[-1] if ws.run_ids() else None)
    if run_id is None:
        return None
    rd = ws.run_dir(run_id)
    if not rd.is_dir():
        return {"run_id": run_id, "error": f"no run {run_id!r} in {ws.runs}"}
    state, malformed = load_run_state(rd)
    try:
        saved = read_json(rd / "state.json", {}) or {}
    except ValueError:
        saved = {}
    live = engine_liveness(rd)
    hb = live.get("heartbeat") or {}
    running = bool(active and active.get("run_id") == run_id)
    status = state.status
    if status == "running" and not running:
        status = "crashed"  # events say running, but no engine holds the lock: killed or crashed
    done = saved.get("done", {})
    return {
        "run_id": run_id, "status": status, "active": running, "pid": hb.get("pid") if running else None,
        "exit_code": state.exit_code, "profile": saved.get("profile") or state.profile,
        "cycle": saved.get("cycle"), "cycles": saved.get("cycles"),
        "phase": hb.get("phase"), "step": hb.get("step") if running else None,
        "step_name": hb.get("step_name") if running else None, "n": hb.get("n") if running else None,
        "total": hb.get("total") if running else None,
        "heartbeat_age_s": live.get("age_s"), "heartbeat_stale": live.get("stale"),
        "engine": "alive" if running else (live.get("reason") or "not running"),
        "started_at": state.started_at, "ended_at": state.ended_at, "last_seq": state.last_seq,
        "steps_complete": sorted((k for k, v in done.items() if v == "complete"),
                                 key=lambda k: (int(k.split(":")[0]), [int(x) for x in k.split(":")[1].split(".")])),
        "steps_skipped": sorted(k for k, v in done.items() if v == "skip"),
        "steps": state.to_dict()["steps"],
        "current_step": state.current_step if running else None,
        "last_train": state.last_train, "errors": state.to_dict()["errors"],
        # the failure of the latest attempt only: a run resumed to the end is done, whatever failed before
        "failure": saved.get("failure") if status == "failed" else None,
        "past_failures": saved.get("past_failures", []), "stop_requested": state.stop_requested is not None,
        "malformed_events": [str(m) for m in malformed],
        "resumable": status in ("stopped", "failed", "crashed"),
        "duration_s": round(state.active_s + (time.time() - state.segment_start
                                              if running and state.segment_start else 0.0), 1),
        "versions": _run_versions(saved), "stops": state.stops, "resumes": state.resumes,
    }


def _run_versions(saved: dict[str, Any]) -> list[str]:
    """Model versions a run trained, by cycle (the ML steps keep them in its saved state)."""
    ml = (saved.get("ctx") or {}).get("ml") or {}
    by_cycle = sorted((int(k.split(":")[1]), v) for k, v in ml.items()
                      if k.startswith("version:") and k.split(":")[1].isdigit())
    return [v for _, v in by_cycle]


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _workspace_warnings(ws) -> list[str]:
    """What `bpllm status` warns about whatever the run: a workspace whose backups have no mirror."""
    if not ws.config.backup.mirror:
        return [f"no backup mirror: backups live on the workspace's own disk only; set [backup] mirror = "
                f"\"/path/on/another/disk\" in {ws.config_path}"]
    return []


def cmd_status(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    st = _status_obj(ws, args.run)
    warnings = _workspace_warnings(ws)
    if args.json:
        _dump((st or {"run_id": None, "status": "none", "active": False}) | {"warnings": warnings})
        return 0 if st is None or "error" not in st else 1
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if st is None:
        print("no runs yet (start one with `bpllm run`)")
        return 0
    if "error" in st:
        return _err(f"bpllm status: {st['error']}")
    print(f"run {st['run_id']}: {st['status']}" + (f" (exit {st['exit_code']})" if st["exit_code"] is not None else ""))
    engine = str(st["engine"])  # "alive", or the liveness reason ("engine finished (done)", "no heartbeat.json")
    engine = engine if engine.startswith("engine ") else f"engine {engine}"
    print(f"  profile {st['profile']}, cycle {st['cycle']}/{st['cycles']}, {engine}")
    if st["active"]:
        prog = f" {st['n']}/{st['total']}" if st["total"] else ""
        print(f"  step {st['step']} {st['step_name'] or ''}{prog} (phase {st['phase']}, heartbeat "
              f"{st['heartbeat_age_s']:.1f}s ago{', STALE' if st['heartbeat_stale'] else ''})")
    print(f"  {len(st['steps_complete'])} steps complete, {len(st['steps_skipped'])} skipped")
    if st["failure"]:
        f = st["failure"]
        print(f"  failed at step {f.get('step')}: {f.get('category')}: {f.get('message')}")
    if st["resumable"]:
        print(f"  resume with: bpllm resume {st['run_id']}")
    for m in st["malformed_events"]:
        print(f"  warning: {m}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    ws = _workspace(args)
    rows = [r for r in (_status_obj(ws, rid) for rid in reversed(ws.run_ids())) if r]
    out = [{k: r.get(k) for k in ("run_id", "status", "exit_code", "profile", "cycle", "cycles", "started_at",
                                   "ended_at", "active", "duration_s", "versions", "stops", "resumes")}
           | {"steps_complete": len(r.get("steps_complete", []))}
           for r in rows]
    if args.json:
        _dump(out)
        return 0
    if not out:
        print("no runs yet")
        return 0
    print(f"{'RUN':<22} {'STATUS':<8} {'EXIT':<4} {'PROFILE':<14} {'STARTED':<19} {'DURATION':>8} "
          f"{'VERSION':<8} {'STOPPED':>7} {'RESUMED':>7} STEPS")
    for r in out:
        print(f"{r['run_id']:<22} {r['status']:<8} {str(r['exit_code'] if r['exit_code'] is not None else '-'):<4} "
              f"{str(r['profile']):<14} {_fmt_time(r['started_at']):<19} {_fmt_duration(r['duration_s']):>8} "
              f"{','.join(r['versions'] or []) or '-':<8} {r['stops']:>7} {r['resumes']:>7} {r['steps_complete']}")
    return 0


def cmd_leakage(args: argparse.Namespace) -> int:
    ws = _workspace(args)

    rep = leakage_report(ws)
    if args.lesson:
        rep["lessons"] = [lesson for lesson in rep["lessons"] if lesson["lesson_id"] in set(args.lesson)]
    if args.json:
        _dump(rep)
        return 0
    print(f"training data: {rep['training_data']} ({rep['training_rows']} rows)")
    print(f"{'LESSON':<18} {'STATUS':<8} {'SEEN':>5} {'UNSEEN':>6}")
    for lesson in rep["lessons"]:
        hold = " (holdout)" if lesson["holdout"] else ""
        print(f"{lesson['lesson_id']:<18} {lesson['status']:<8} {lesson['seen']:>5} {lesson['unseen']:>6}{hold}")
    print(f"total: {rep['seen']} seen, {rep['unseen']} unseen of {rep['total']} prompts")
    for p in rep["problems"]:
        print(f"warning: {p}", file=sys.stderr)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    ws = _workspace(args)

    try:
        rep = import_blueprintllm(ws, args.path, system_prompt=args.system_prompt,
                                  progress=None if args.json else (lambda m: print(f"  {m}")))
    except FileNotFoundError as exc:
        return _err(f"bpllm import-blueprintllm: {exc}")
    if args.json:
        _dump(rep)
        return 0
    li = sum(x.get("imported", 0) for x in rep["lessons"])
    lq = sum(x.get("quarantined", 0) for x in rep["lessons"])
    di = sum(x["imported"] for x in rep["datasets"])
    dq = sum(x["quarantined"] for x in rep["datasets"])
    print(f"imported {len(rep['lessons'])} lessons ({li} prompts, {lq} quarantined) and "
          f"{len(rep['datasets'])} datasets ({di} rows, {dq} quarantined with diagnostics in {ws.quarantine})")
    for d in rep["datasets"]:
        if d["quarantined"]:
            print(f"  {d['file']}: {d['quarantined']} quarantined: {'; '.join(d['top_reasons'])}")
    for n in rep["notes"]:
        print(f"  note: {n}")
    return 0


def _locked(ws, what: str):
    """The workspace lock for a command that changes files; LockBusy reaches engine.cli.main."""
    return WorkspaceLock(ws.lock_path).acquire(f"({what})", command=what)


def cmd_backup(args: argparse.Namespace) -> int:
    ws = _workspace(args)

    lock = _locked(ws, "backup")
    try:
        info = create_backup(ws, args.tier, label=args.label)
    except OSError as exc:  # BackupError: engine.cli.main reports it
        return _err(f"bpllm backup: {exc}")
    finally:
        lock.release()
    if args.json:
        _dump(info)
    else:
        print(f"backup {info['name']} ({info['files']} files, {info['bytes']} bytes) in {info['path']}"
              + (f"; mirrored to {info['mirror']}" if info["mirror"] else ""))
        for p in info["pruned"]:
            print(f"  pruned old {args.tier} backup {p}")
        for c in info["cleaned"]:
            print(f"  removed a failed backup's leftover {c}")
        for s in info["skipped"]:
            print(f"  warning: not copied: {s}")
        if info.get("mirror_error"):
            print(f"  warning: {info['mirror_error']}")
    return 0


def cmd_backups(args: argparse.Namespace) -> int:
    ws = _workspace(args)

    items = list_backups(ws)
    if args.verify:
        for b in items:
            b["problems"] = verify_backup(Path(b["path"]), ws.root)
            b["verified"] = not b["problems"]
    failed = [b for b in items if args.verify and not b["verified"]]
    code = 1 if failed else 0  # --verify: a FAILED backup is a failure, for scripts and cron too
    if args.json:
        _dump(items)
        return code
    if not items:
        print("no backups yet (`bpllm backup`)")
        return 0
    width = max(48, *(len(b["name"]) for b in items))  # safety backups carry the restored backup's name
    for b in items:
        ver = "" if not args.verify else ("  verified" if b["verified"] else f"  FAILED: {b['problems'][0]}")
        state = "" if b["complete"] else "  (incomplete)"
        print(f"{b['name']:<{width}} {b['tier']:<10} {_fmt_time(b['created_at'])}  {b['files']} files{state}{ver}")
    if failed:
        print(f"bpllm backups: {len(failed)} of {len(items)} backups FAILED verification "
              f"({', '.join(b['name'] for b in failed[:5])}); they cannot be restored", file=sys.stderr)
    return code


def cmd_restore(args: argparse.Namespace) -> int:
    ws = _workspace(args)

    b = find_backup(ws, args.name)
    problems = verify_backup(Path(b["path"]), ws.root)
    if problems:
        return _err(f"bpllm restore: backup {args.name} failed verification; nothing was restored:\n  - "
                    + "\n  - ".join(problems))
    if not args.yes:
        if not sys.stdin.isatty():
            return _err("bpllm restore: this replaces the workspace's lessons, datasets, models and history; "
                        "pass --yes to confirm (a safety backup is taken first)")
        answer = input(f"restore {args.name} over {ws.root}? a safety backup is taken first [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not restored")
            return 1
    lock = _locked(ws, "restore")
    try:
        info = restore_backup(ws, args.name)
    except OSError as exc:  # BackupError: engine.cli.main reports it
        return _err(f"bpllm restore: {exc}")
    finally:
        lock.release()
    print(f"restored {args.name}: {', '.join(info['restored'])}; safety backup {info['safety_backup']}")
    return 0


def cmd_gpus(args: argparse.Namespace) -> int:
    roles = {}
    try:
        ws = resolve_workspace(getattr(args, "workspace", None))
        roles = ws.config.telemetry.roles
    except Exception:  # noqa: BLE001 - gpus works outside a workspace too
        pass
    s = sample(roles=roles, cpu_interval=0.5)  # a real sample: psutil's first call in a process says 0.0
    if args.json:
        _dump(s)
        return 0
    if not s["available"]:
        print(s["reason"])
    for d in s["devices"]:
        mem = f"{d['mem_used'] / 2**30:.1f}/{d['mem_total'] / 2**30:.1f} GiB"
        ti = "-" if d.get("torch_index") is None else d["torch_index"]
        print(f"GPU {d['index']} (torch {ti}) {d['name']} [{d['role']}] {mem} util {d['util']}% "
              f"{d['temp']}°C bus {d['pci_bus_id']}")
        for p in d.get("processes", []):
            print(f"    pid {p['pid']} {p.get('name') or ''} {p['mem_used'] / 2**20:.0f} MiB")
    ram = f"{s['ram_used'] / 2**30:.1f}/{s['ram_total'] / 2**30:.1f} GiB" if s.get("ram_total") else "?"
    print(f"CPU {s.get('cpu_percent')}%  RAM {ram}  load {s.get('load_avg')}")
    return 0
