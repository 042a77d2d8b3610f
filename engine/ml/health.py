"""The health monitor (5.x / 7.x): the reference project's rules as pure functions.

Input is what the engine already records — ``train``/``eval`` events, the training
rows, mastery tables, exam averages per version — and output is a list of alerts
``{check, severity, message, value, threshold, key}``. The step code emits each
through ``ctx.health`` (event + idempotent record in the history store), so
re-running a check counts the alert again and never hides it.
"""
from __future__ import annotations

import statistics
import time
from collections import Counter
from typing import Any, Sequence

from engine.dataset.rows import lesson_share

MEMORISATION_LOSS = 0.05
OVERFIT_RATIO = 0.5
PLATEAU_REL = 0.01
SLOW_RATIO = 0.8
OSCILLATION_SHARE = 0.6
LESSON_SHARE = 0.40
DUPLICATE_SHARE = 0.05
REGRESSION_POINTS = 10.0
MASTERY_SCORE = 85.0  # grading.MASTERED (kept here so the rules stay a stdlib-only module)
LARGE_DATASET = 2500  # the reference: above this many examples one epoch is enough
STAGNATION_POINTS = 1.0


def _alert(check: str, severity: str, message: str, value: float | None = None, threshold: float | None = None,
           key: str | None = None) -> dict[str, Any]:
    return {"check": check, "severity": severity, "message": message,
            "value": None if value is None else round(float(value), 4),
            "threshold": threshold, "key": key or check}


def training_alerts(train: Sequence[dict[str, Any]], evals: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Loss-curve rules over ``train`` events (step, loss) and ``eval`` events (step, eval_loss)."""
    alerts: list[dict[str, Any]] = []
    losses = [float(e["loss"]) for e in train if e.get("loss") is not None]
    if not losses:
        return [_alert("no_training_loss", "warning", "no train loss was logged: nothing to judge")]
    final = statistics.fmean(losses[-3:])
    first = statistics.fmean(losses[:3])
    if final < MEMORISATION_LOSS:
        alerts.append(_alert("low_train_loss", "warning",
                             f"train loss {final:.4f} < {MEMORISATION_LOSS}: the model may be memorising the data",
                             final, MEMORISATION_LOSS))
    eval_losses = [float(e["eval_loss"]) for e in evals if e.get("eval_loss") is not None]
    if eval_losses:
        ev = eval_losses[-1]
        if final < OVERFIT_RATIO * ev:
            alerts.append(_alert("overfitting", "warning",
                                 f"train loss {final:.3f} < {OVERFIT_RATIO} x eval loss {ev:.3f}: overfitting",
                                 final / ev if ev else None, OVERFIT_RATIO))
    if len(losses) >= 6:
        tail = losses[-max(3, len(losses) // 3):]
        rel = (max(tail) - min(tail)) / max(1e-9, statistics.fmean(tail))
        if rel < PLATEAU_REL:
            alerts.append(_alert("plateau", "warning",
                                 f"loss flat over the last {len(tail)} logs (spread {rel:.1%}): a plateau",
                                 rel, PLATEAU_REL))
        if first > 0 and final / first > SLOW_RATIO:
            alerts.append(_alert("slow_convergence", "warning",
                                 f"loss fell only from {first:.3f} to {final:.3f} ({final / first:.0%} of the start)",
                                 final / first, SLOW_RATIO))
        diffs = [b - a for a, b in zip(losses, losses[1:])]
        flips = sum(1 for a, b in zip(diffs, diffs[1:]) if a * b < 0)
        share = flips / max(1, len(diffs) - 1)
        swing = statistics.pstdev(diffs) / max(1e-9, statistics.fmean(losses[-len(diffs):]))
        if share > OSCILLATION_SHARE and swing > 0.1:
            alerts.append(_alert("oscillation", "warning",
                                 f"loss changes direction in {share:.0%} of logs with {swing:.0%} swings: "
                                 "lower the learning rate", share, OSCILLATION_SHARE))
    return alerts


def data_alerts(rows: Sequence[dict[str, Any]], epochs: float | None = None) -> list[dict[str, Any]]:
    """Lesson share > 40 % of all rows, duplicates > 5 %, and (with ``epochs``, the profile's) more than
    2,500 examples trained for more than one epoch."""
    alerts: list[dict[str, Any]] = []
    n = len(rows)
    if not n:
        return alerts
    if n > LARGE_DATASET and epochs is not None and epochs > 1:
        alerts.append(_alert("epochs_for_size", "warning",
                             f"{n} training examples (> {LARGE_DATASET:,}) trained for {epochs:g} epochs: "
                             "suggest 1 epoch (set [train] epochs = 1 in bpllm.toml)", n, LARGE_DATASET))
    alert = lesson_share_alert(rows)
    if alert:
        alerts.append(alert)
    keys = Counter((" ".join(str(r.get("instruction", "")).lower().split()), str(r.get("output", "")).strip())
                   for r in rows)
    dups = sum(c - 1 for c in keys.values() if c > 1)
    if dups / n > DUPLICATE_SHARE:
        alerts.append(_alert("duplicates", "warning", f"{dups} of {n} training rows are duplicates "
                             f"({dups / n:.1%} > {DUPLICATE_SHARE:.0%})", dups / n, DUPLICATE_SHARE))
    return alerts


def lesson_share_alert(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """"Lesson data > 40 % of total": all lesson rows together (two lessons at 25 % each are 50 %),
    counting imported rows by their provenance (the reference marks them ``source = "lesson:…"``)."""
    share, per = lesson_share(list(rows))
    if share <= LESSON_SHARE:
        return None
    top = ", ".join(f"{lesson} {count}" for lesson, count in Counter(per).most_common(3))
    return _alert("lesson_share", "warning",
                  f"lesson data is {share:.1%} of the {len(rows)} training rows (> {LESSON_SHARE:.0%}; "
                  f"{len(per)} lesson(s): {top}{', …' if len(per) > 3 else ''}): the model will over-fit their "
                  "phrasing; add synthetic or curated rows", share, LESSON_SHARE)


def mastery_alerts(table: Sequence[dict[str, Any]],
                   paired: dict[str, dict[str, Any]] | None = None,
                   mastered_before: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Node regression > 10 points against the previous version is critical; so is a node that falls
    below mastery (85) after being mastered — catastrophic forgetting, however small the drop.

    With ``paired`` (``grading.paired_node_changes`` over the prompts both versions answered) the
    message says how many of the node's prompts changed and whether they agree, so a reviewer can
    tell a real regression from one prompt flipping. ``mastered_before``: node -> the last earlier
    version that mastered it (without it, the previous version's score, ``score - delta``, decides)."""
    out = []
    for row in table:
        delta = row.get("delta")
        if delta is not None and delta < -REGRESSION_POINTS:
            message = f"{row['node']} mastery fell {abs(delta):.1f} points to {row['score']:.1f}"
            evidence = (paired or {}).get(row["node"])
            if evidence and evidence.get("low") is not None:
                message += (f" ({evidence['flipped']} of {evidence['n']} shared prompts changed; paired 95 % "
                            f"[{evidence['low']:+.1f}, {evidence['high']:+.1f}]"
                            + ("" if evidence["high"] < 0 else ": the prompts disagree, possibly retraining noise")
                            + ")")
            out.append(_alert("node_regression", "critical", message,
                              delta, -REGRESSION_POINTS, key=f"node_regression:{row['node']}"))
        if row["score"] < MASTERY_SCORE:
            was = (mastered_before or {}).get(row["node"])
            if was is None and mastered_before is None and delta is not None \
                    and row["score"] - delta >= MASTERY_SCORE:
                was = "the previous version"
            if was is not None:
                drop = f" ({delta:+.1f} points)" if delta is not None else ""
                out.append(_alert("forgetting", "critical",
                                  f"{row['node']} fell below mastery to {row['score']:.1f}{drop} after being mastered "
                                  f"in {was}: catastrophic forgetting", row["score"], MASTERY_SCORE,
                                  key=f"forgetting:{row['node']}"))
    return out


def stagnation_alerts(version_scores: Sequence[tuple[str, float]], window: int = 3) -> list[dict[str, Any]]:
    """Average exam score not improving over the last ``window`` versions."""
    if len(version_scores) < window:
        return []
    recent = [s for _, s in version_scores[-window:]]
    gain = recent[-1] - max(recent[:-1])
    if gain < STAGNATION_POINTS:
        names = ", ".join(v for v, _ in version_scores[-window:])
        return [_alert("stagnation", "warning",
                       f"exam average has not improved by {STAGNATION_POINTS} point over {names} "
                       f"({' -> '.join(f'{s:.1f}' for s in recent)})", gain, STAGNATION_POINTS)]
    return []


def health_report_doc(version: str, alerts: list[dict[str, Any]], previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """A version's ``health_report.json``: ``alerts`` joined to the ``previous`` report's by key (a re-run
    replaces its own alert, never duplicates it), with the worst severity as the status."""
    by_key = {a.get("key", a.get("check")): a for a in (previous or {}).get("alerts", [])}
    by_key.update({a.get("key", a.get("check")): a for a in alerts})
    merged = list(by_key.values())
    status = ("critical" if any(a["severity"] == "critical" for a in merged)
              else "warning" if merged else "healthy")
    return {"version": version, "alerts": merged, "created": time.time(), "status": status}
