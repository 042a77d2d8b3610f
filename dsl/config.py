"""bpllm.toml, typed: one dataclass per section, one documented field per setting, and one loader.

The engine (``Workspace.config``), the TUI (its ``[tui]`` table and the workspace's profile) and the DSL
command line (``bpllm validate`` reads ``[dsl] unknown_nodes``) all read the file through
:func:`load_config`. It lives in ``dsl`` for the reason ``dsl/errors.py`` does: ``dsl`` is the lowest
layer (the engine and the TUI import it, and it may import neither), and this module imports the
standard library and ``dsl.errors`` only, so ``bpllm validate`` stays light.

Every field carries its doc, its value rule (types, range, the words the error uses) and its old
spellings in ``dataclasses.field(metadata=...)``. Reading is checked: an unknown key, a wrong type or a
value out of range raises one :class:`ConfigError` that names the file, the line, the key, the value and
what is allowed; an old spelling is read with a :class:`ConfigDeprecationWarning` naming the file, the
line, the key and the new spelling. Reading sets nothing anywhere else: callers pass the values on.

Sections the engine owns are strict (a typo in ``kill_s`` would silently disable stall detection).
``[profiles.<name>]`` tables and the ML sections (``[exam]``, ``[grading]``, ``[health]``, ``[train]``,
``[tui]``) are open: an ML module other than ours may keep keys of its own there (``section.extra``,
also readable as ``cfg["train"]["my_key"]``); every key bpllm itself reads is still checked.
"""
from __future__ import annotations

import difflib
import importlib.util
import json
import math
import re
import tomllib
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, NamedTuple

from dsl.errors import BpllmError

CONFIG_FILE = "bpllm.toml"
# the profiles engine.ml.profiles ships (a test checks they agree): names only, so this module needs no engine
BUILTIN_PROFILES: tuple[str, ...] = ("tiny", "llama-8b-bf16", "llama-70b-8bit")


class ConfigError(BpllmError, ValueError):
    """A bpllm.toml problem: the message names the file, the line and the key; the hint says what to do."""


class ConfigDeprecationWarning(FutureWarning):
    """A setting written with its old spelling (shown by default: FutureWarning is for end users)."""


# --- value rules ------------------------------------------------------------------------------------

class Rule(NamedTuple):
    """What one setting may hold: TOML types, a range check, and the words the error uses."""

    types: tuple[type, ...]
    allowed: str
    check: Callable[[Any], bool] = lambda _v: True
    as_float: bool = False  # a whole number written for a float setting is read as a float

    def accepts(self, val: Any) -> bool:
        if isinstance(val, bool) and bool not in self.types:
            return False  # TOML true is not a count
        if not isinstance(val, self.types):
            return False
        if isinstance(val, float) and not math.isfinite(val):
            return False  # inf / nan
        return bool(self.check(val))

    def read(self, val: Any) -> Any:
        return float(val) if self.as_float and isinstance(val, int) and not isinstance(val, bool) else val


def _int(lo: int, hi: int | None = None) -> Rule:
    words = f"a whole number >= {lo}" if hi is None else f"a whole number from {lo} to {hi}"
    return Rule((int,), words, lambda v: v >= lo and (hi is None or v <= hi))


def _num(lo: float, *, above: bool = False, hi: float | None = None, below: bool = False) -> Rule:
    if hi is not None:
        words = f"a number in {'(' if above else '['}{lo:g}, {hi:g}{')' if below else ']'}"
    else:
        words = f"a number {'>' if above else '>='} {lo:g}"
    return Rule((float, int), words, lambda v: (v > lo if above else v >= lo)
                and (hi is None or (v < hi if below else v <= hi)), as_float=True)


def _enum(*values: str) -> Rule:
    return Rule((str,), "one of " + ", ".join(json.dumps(v) for v in values), lambda v: v in values)


BOOL = Rule((bool,), "true or false")
TEXT = Rule((str,), "a non-empty string", lambda v: bool(v.strip()))
ANY_TEXT = Rule((str,), "a string")
PATH = Rule((str,), "a path, as a non-empty string", lambda v: bool(v.strip()))
SEED = _int(0)
POSITIVE = _int(1)
COUNT = _int(0)
SECONDS = _num(0, above=True)
PROBABILITY = _num(0, hi=1)
TEXT_LIST = Rule((list,), "a list of non-empty strings", lambda v: all(isinstance(x, str) and x.strip() for x in v))
STRING_LIST = Rule((list,), "a list of strings", lambda v: all(isinstance(x, str) for x in v))
EXAM_BATCH = Rule((int,), "0 (sized from free GPU memory) or a whole number >= 1", lambda v: v >= 0)


def setting(default: Any, doc: str, rule: Rule, *, old: tuple[str, ...] = ()) -> Any:
    """A config field: its default, a one-line doc, its value rule and its old spellings (read with a warning)."""
    meta = {"doc": doc, "rule": rule, "old": old}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


# --- sections -----------------------------------------------------------------------------------------

@dataclass
class Section:
    """A table of bpllm.toml. ``None`` in a field means "not set" (the consumer's own default applies).

    Open sections keep the keys bpllm does not read in ``extra``; dict-style reads (``sec["key"]``,
    ``sec.get``) see the set fields and those keys, for ML modules that read their own keys.
    """

    OPEN: ClassVar[bool] = False
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def settings(cls) -> list[Any]:
        """The documented fields (every one but ``extra``)."""
        return [f for f in fields(cls) if "doc" in f.metadata]

    def as_dict(self) -> dict[str, Any]:
        """The set values and the extra keys, as a plain table."""
        out = {f.name: getattr(self, f.name) for f in self.settings() if getattr(self, f.name) is not None}
        return {**out, **self.extra}

    def __getitem__(self, key: str) -> Any:
        table = self.as_dict()
        if key not in table:
            raise KeyError(key)
        return table[key]

    def __contains__(self, key: object) -> bool:
        return key in self.as_dict()

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())

    def get(self, key: str, default: Any = None) -> Any:
        return self.as_dict().get(key, default)

    def items(self):
        return self.as_dict().items()


@dataclass
class WorkspaceSection(Section):
    name: str = setting("bpllm", "a label for this workspace", TEXT)
    language: str = setting("blueprint", "the language pack of the workspace (see `bpllm languages`)", TEXT)


@dataclass
class RunSection(Section):
    profile: str = setting("tiny", "training profile: tiny | llama-8b-bf16 | llama-70b-8bit | a [profiles.X] table",
                           TEXT)
    cycles: int = setting(1, "teaching cycles per `bpllm run`", POSITIVE)


@dataclass
class DataSection(Section):
    validation_fraction: float = setting(0.05, "share of rows held out for validation (by graph group)",
                                         _num(0, hi=1, below=True))
    min_validation: int = setting(2, "at least this many validation rows when there are enough rows", COUNT)
    seed: int = setting(1234, "seed for the split and variations", SEED)
    near_duplicate_keep: int = setting(3, "rows kept per template fingerprint (values masked); 0 = no limit", COUNT)
    variations: int = setting(2, "instruction variations generated per lesson prompt in step 8.2", COUNT)
    integrate: str = setting("examined", "which lessons step 8 integrates: examined | all | none",
                             _enum("examined", "all", "none"))
    system_prompt: str = setting("system_prompt.txt", "system prompt file (workspace-relative)", PATH)
    exports_dir: str = setting("exports", "UE5 clipboard exports (.txt, T3D) scanned by step 1.1", PATH)


EXPORT_FORMATS = ("openai", "anthropic", "hf-chat", "alpaca")  # engine/dataset/export.py FORMATS
URL = Rule((str,), "an http(s) URL", lambda v: v.startswith(("http://", "https://")) and len(v) > 8)
FORMAT_LIST = Rule((list,), "a list of export formats: " + ", ".join(json.dumps(f) for f in EXPORT_FORMATS),
                   lambda v: all(x in EXPORT_FORMATS for x in v))


@dataclass
class SourcesSection(Section):
    """``[sources]``: where a cycle's raw .blend files come from and which fine-tune files it writes
    (steps 1.1, 1.2 and 1.5; docs/pipeline.md "In the loop")."""

    github_query: str = setting("", "GitHub code search step 1.1 scrapes .blend files with ('' = no scraping)",
                                ANY_TEXT)
    api_url: str = setting("https://api.github.com", "GitHub API root (GitHub Enterprise: https://HOST/api/v3)", URL)
    scrape_dir: str = setting("datasets/raw/github", "folder step 1.1 scrapes into (workspace-relative)", PATH)
    max_files: int = setting(50, "distinct files a scrape stores at most", POSITIVE)
    max_size_mb: float = setting(50.0, "skip larger files (size from the contents API, before any download)",
                                 SECONDS)
    min_stars: int = setting(0, "skip repositories with fewer stars", COUNT)
    blend_dirs: list[str] = setting([], "more folders of .blend files step 1.2 builds rows from", TEXT_LIST)
    export_formats: list[str] = setting([], "fine-tune files step 1.5 writes: openai | anthropic | hf-chat | alpaca",
                                        FORMAT_LIST)
    export_dir: str = setting("datasets/export", "folder of those files: FORMAT/train.jsonl, FORMAT/val.jsonl",
                              PATH)


@dataclass
class DslSection(Section):
    unknown_nodes: str = setting("error", "node types missing from the catalog: error | warning (the data steps "
                                          "and `bpllm validate` in this workspace)", _enum("error", "warning"))


@dataclass
class SyntheticSection(Section):
    count: int = setting(500, "rows generated by step 1.3 (engine.dataset.synthetic)", COUNT)
    seed: int = setting(7, "generator seed", SEED)
    enabled: bool = setting(True, "run step 1.3", BOOL)


@dataclass
class RetrySection(Section):
    max_attempts: int = setting(3, "attempts per step for retryable errors (OOM, network, timeout)", POSITIVE)
    backoff_s: float = setting(10.0, "first retry delay", _num(0))
    backoff_factor: float = setting(2.0, "delay multiplier per attempt", _num(1))
    max_backoff_s: float = setting(300.0, "delay cap", _num(0))


@dataclass
class StallSection(Section):
    warn_s: float = setting(300.0, "warn after this long without progress", SECONDS)
    kill_s: float = setting(600.0, "abort the step (timeout, resumable) after this long without progress", SECONDS)
    loading_kill_s: float = setting(1800.0, "kill limit while loading models", SECONDS)
    training_kill_s: float = setting(10800.0, "kill limit while training (reference: 3 h)", SECONDS)
    exam_kill_s: float = setting(1800.0, "kill limit between exam prompts", SECONDS)
    enabled: bool = setting(True, "run the stall watchdog", BOOL)

    def kill_after(self, phase: str | None) -> float:
        """The kill limit of a step phase (loading, training, exam); kill_s for any other."""
        return {"loading": self.loading_kill_s, "training": self.training_kill_s,
                "exam": self.exam_kill_s}.get(phase or "", self.kill_s)


@dataclass
class HeartbeatSection(Section):
    interval_s: float = setting(2.0, "heartbeat.json refresh interval", SECONDS)


ROLES = Rule((dict,), 'a table of GPU index = "role", e.g. { "0" = "training" }',
             lambda v: all(str(k).isdigit() and isinstance(r, str) and r.strip() for k, r in v.items()))


@dataclass
class TelemetrySection(Section):
    enabled: bool = setting(True, "sample GPUs/CPU/RAM during runs", BOOL)
    interval_s: float = setting(5.0, "gpu event interval", SECONDS)
    roles: dict[str, str] = setting({}, 'role per nvidia-smi index, e.g. {"0" = "training", "1" = "display"}', ROLES)


@dataclass
class BackupSection(Section):
    mirror: str = setting("", "second-disk mirror directory ('' = none)", ANY_TEXT)
    keep_pre_train: int = setting(3, "pre-train backups kept", POSITIVE)
    keep_scheduled: int = setting(5, "scheduled backups kept", POSITIVE)
    keep_safety: int = setting(5, "safety backups (taken before a restore or a resume) kept", POSITIVE)
    watchdog_hours: float = setting(6.0, "take a watchdog backup every this many hours of a run (0 = never)", _num(0))
    keep_watchdog: int = setting(5, "watchdog backups kept", POSITIVE)
    include: list[str] = setting(["bpllm.toml", "system_prompt.txt", "lessons", "datasets", "models", "history.db"],
                                 "workspace paths a backup holds", TEXT_LIST)


@dataclass
class ExamSection(Section):
    OPEN: ClassVar[bool] = True
    batch_size: int | None = setting(None, "prompts decoded together (0: from free GPU memory); unset: the "
                                           "profile's exam_batch_size", EXAM_BATCH)
    max_new_tokens: int | None = setting(None, "token cap per answer; unset: the profile's exam_max_new_tokens",
                                         POSITIVE)
    time_budget_s: float | None = setting(None, "seconds per prompt; unset: the profile's exam_time_budget_s",
                                          SECONDS)
    constrained: bool | None = setting(None, "decode under a constraint; unset: the profile's constrained", BOOL)
    constraint: str = setting("catalog", "syntax: the grammar only; catalog: the grammar and the catalog's rules",
                              _enum("syntax", "catalog"))


@dataclass
class GradingSection(Section):
    OPEN: ClassVar[bool] = True
    weakest: int = setting(5, "node types a drafted lesson aims at", POSITIVE)
    min_prompts: int = setting(2, "prompts a node type needs to count among the weakest first", POSITIVE)
    contrast_share: float = setting(0.4, "share of a draft reviewing look-alikes and exam swaps (0 = pure drill)",
                                    PROBABILITY)
    contrast_per_node: int = setting(3, "look-alike node types reviewed per weak node", COUNT)
    contrast_nodes: int = setting(10, "look-alike node types reviewed in all", COUNT)
    contrast_min_swaps: int = setting(2, "an exam swap counts as a confusion from this many occurrences", POSITIVE)
    draft_prompts: int = setting(60, "prompts per drafted lesson (every gold validated)", POSITIVE)
    seed: int = setting(0, "draft seed (plus the cycle number)", SEED)
    auto_accept: bool = setting(False, "true: the draft goes straight to lessons/ (no `bpllm accept`)", BOOL)


@dataclass
class HealthSection(Section):
    OPEN: ClassVar[bool] = True


KEYS = Rule((dict,), 'a table of binding id = "key[,key...]"',
            lambda v: all(isinstance(k, str) and k.strip() for k in v.values()))


@dataclass
class TuiSection(Section):
    """The control room's settings; also the keys of the user's own tui.toml (bpllm_tui.config)."""

    OPEN: ClassVar[bool] = True
    theme: str | None = setting(None, "Textual theme name (unset: textual-dark)", TEXT)
    profile: str | None = setting(None, "profile passed to `bpllm run` (unset: [run] profile)", TEXT)
    run_args: list[str] | None = setting(None, 'more `bpllm run` arguments, e.g. ["--only", "1,2,8,9"]',
                                         STRING_LIST)
    log_lines: int | None = setting(None, "bound of the log buffer (unset: 5000)", POSITIVE)
    loss_window: int | None = setting(None, '"last N" window of the loss chart (unset: 200)', POSITIVE)
    stall_seconds: float | None = setting(None, "heartbeat age that counts as a stall warning (unset: 120)",
                                          SECONDS)
    keys: dict[str, str] = setting({}, 'key rebinding: binding id = "key[,key...]" (see the help screen, F1)', KEYS)


TARGET_MODULES = Rule((list, str), 'a list of module names, or "all-linear"',
                      lambda v: bool(v.strip()) if isinstance(v, str)
                      else bool(v) and all(isinstance(x, str) and x.strip() for x in v))
TINY_TABLE = Rule((dict,), "a table of tiny-base settings, e.g. { hidden_size = 128 }")


@dataclass
class ProfileSettings(Section):
    """A ``[profiles.<name>]`` table: the fields of engine.ml.profiles.Profile (a test checks they agree),
    each unset (None) unless the table sets it; ``base`` names the built-in profile it starts from."""

    OPEN: ClassVar[bool] = True
    name: str | None = setting(None, "the profile's name (the table's own name when unset)", TEXT)
    base: str | None = setting(None, "the built-in profile this table starts from, or a model path / hub id", TEXT)
    model: str | None = setting(None, "the model to load (local path or hub id), over the base profile's", TEXT)
    lora_r: int | None = setting(None, "LoRA rank", POSITIVE)
    lora_alpha: float | None = setting(None, "LoRA alpha", _num(0, above=True)._replace(as_float=False))
    lora_dropout: float | None = setting(None, "LoRA dropout", _num(0, hi=1, below=True))
    target_modules: list[str] | str | None = setting(None, 'modules LoRA adapts (or "all-linear")', TARGET_MODULES)
    learning_rate: float | None = setting(None, "peak learning rate", SECONDS, old=("lr",))
    epochs: float | None = setting(None, "training epochs", SECONDS, old=("num_epochs",))
    max_steps: int | None = setting(None, "optimizer steps cap (-1: no cap)",
                                    Rule((int,), "-1 (no cap) or a whole number >= 1", lambda v: v == -1 or v >= 1))
    batch_size: int | None = setting(None, "rows per micro-batch", POSITIVE)
    grad_accum: int | None = setting(None, "micro-batches per optimizer step", POSITIVE)
    max_seq_len: int | None = setting(None, "longest training row, in tokens", POSITIVE, old=("max_seq_length",))
    warmup_ratio: float | None = setting(None, "share of steps warming the learning rate up", PROBABILITY)
    warmup_steps: int | None = setting(None, "warm-up steps (> 0 wins over warmup_ratio)", COUNT)
    max_grad_norm: float | None = setting(None, "gradient clipping norm", _num(0))
    weight_decay: float | None = setting(None, "AdamW weight decay", _num(0))
    eval_steps: int | None = setting(None, "evaluate every this many steps (0: once per epoch)", COUNT)
    save_steps: int | None = setting(None, "checkpoint every this many steps", POSITIVE)
    logging_steps: int | None = setting(None, "log every this many steps", POSITIVE)
    save_total_limit: int | None = setting(None, "checkpoints kept", POSITIVE)
    load_in_8bit: bool | None = setting(None, "load the base in 8 bits (bitsandbytes)", BOOL)
    load_in_4bit: bool | None = setting(None, "load the base in 4 bits (bitsandbytes)", BOOL)
    bf16: bool | None = setting(None, "train in bfloat16 (forced off on CPU)", BOOL)
    gradient_checkpointing: bool | None = setting(None, "trade compute for memory (forced off on CPU)", BOOL)
    padding_free: bool | None = setting(None, "concatenate a micro-batch's rows without pad tokens (GPU)", BOOL)
    liger_kernel: bool | None = setting(None, "liger-kernel's fused losses when installed (GPU)", BOOL)
    auto_micro_batch: bool | None = setting(None, "size the micro-batch from free GPU memory", BOOL)
    warm_start: bool | None = setting(None, "continue from the previous version's adapter", BOOL)
    warm_start_epochs: float | None = setting(None, "epochs of a warm-started cycle", SECONDS)
    warm_start_lr_scale: float | None = setting(None, "learning-rate factor of a warm-started cycle", SECONDS)
    retain_weight: float | None = setting(None, "weight of KL to the previous version on tokens it got right",
                                          _num(0))
    launcher: str | None = setting(None, "inprocess | accelerate", _enum("inprocess", "accelerate"))
    num_processes: int | None = setting(None, "accelerate ranks", POSITIVE)
    accelerate_config: str | None = setting(None, "an accelerate config file (FSDP / DeepSpeed)", PATH)
    accelerate_cpu: bool | None = setting(None, "run the accelerate ranks on the CPU", BOOL)
    exam_batch_size: int | None = setting(None, "exam prompts decoded together (0: from free GPU memory)",
                                          EXAM_BATCH)
    exam_max_new_tokens: int | None = setting(None, "token cap per exam answer", POSITIVE)
    exam_time_budget_s: float | None = setting(None, "seconds per exam prompt", SECONDS)
    constrained: bool | None = setting(None, "exams decode under a constraint", BOOL)
    tiny: dict[str, Any] | None = setting(None, "tiny-base settings (see TINY_RULES), merged over the base's",
                                          TINY_TABLE)

    def overrides(self) -> dict[str, Any]:
        """The set Profile fields (``model`` becomes ``base``; ``base`` and unknown keys left out)."""
        out = {f.name: getattr(self, f.name) for f in self.settings()
               if getattr(self, f.name) is not None and f.name not in ("base", "model")}
        if self.model is not None:
            out["base"] = self.model
        return out


@dataclass
class TrainSection(ProfileSettings):
    """``[train]``: Profile fields applied under every profile's table, and trl's experiment trackers."""

    report_to: list[str] | str | None = setting(None, 'experiment trackers trl reports to, e.g. ["tensorboard"]',
                                                Rule((list, str), 'a list of names, e.g. ["tensorboard"] (or "none")',
                                                     lambda v: isinstance(v, str)
                                                     or all(isinstance(x, str) for x in v)))

    def overrides(self) -> dict[str, Any]:
        out = super().overrides()
        out.pop("report_to", None)
        return out


# the `tiny = { ... }` table of a profile (engine.ml.profiles.TINY_BASE_DEFAULTS): strict, our base reads it
TINY_RULES: dict[str, Rule] = {
    "vocab_size": _int(64), "max_token_length": POSITIVE, "isolate_identifiers": BOOL, "node_tokens": BOOL,
    "hidden_size": POSITIVE, "intermediate_size": POSITIVE, "num_hidden_layers": POSITIVE,
    "num_attention_heads": POSITIVE, "max_position_embeddings": POSITIVE, "synthetic_examples": POSITIVE,
    "synthetic_seed": SEED, "pretrain_epochs": SECONDS, "pretrain_batch_size": POSITIVE, "pretrain_lr": SECONDS,
    "pretrain_max_seconds": SECONDS, "system_prompt_share": PROBABILITY, "seed": SEED,
}

SECTIONS: dict[str, type[Section]] = {
    "workspace": WorkspaceSection, "run": RunSection, "data": DataSection, "dsl": DslSection,
    "synthetic": SyntheticSection, "sources": SourcesSection, "retry": RetrySection, "stall": StallSection, "heartbeat": HeartbeatSection,
    "telemetry": TelemetrySection, "backup": BackupSection,
    "exam": ExamSection, "grading": GradingSection, "health": HealthSection, "train": TrainSection, "tui": TuiSection,
}


@dataclass
class Config:
    """A whole bpllm.toml, checked: ``cfg.retry.max_attempts``, ``cfg.profiles["mybig"].lora_r``."""

    workspace: WorkspaceSection = field(default_factory=WorkspaceSection)
    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    dsl: DslSection = field(default_factory=DslSection)
    synthetic: SyntheticSection = field(default_factory=SyntheticSection)
    sources: SourcesSection = field(default_factory=SourcesSection)
    retry: RetrySection = field(default_factory=RetrySection)
    stall: StallSection = field(default_factory=StallSection)
    heartbeat: HeartbeatSection = field(default_factory=HeartbeatSection)
    telemetry: TelemetrySection = field(default_factory=TelemetrySection)
    backup: BackupSection = field(default_factory=BackupSection)
    exam: ExamSection = field(default_factory=ExamSection)
    grading: GradingSection = field(default_factory=GradingSection)
    health: HealthSection = field(default_factory=HealthSection)
    train: TrainSection = field(default_factory=TrainSection)
    tui: TuiSection = field(default_factory=TuiSection)
    profiles: dict[str, ProfileSettings] = field(default_factory=dict)
    source: str = ""  # the file it was read from ("" for defaults)

    def __getitem__(self, section: str) -> Any:
        """Dict-style reads for modules that walk tables (``cfg["train"]["my_key"]``)."""
        if section in SECTIONS or section == "profiles":
            return getattr(self, section)
        raise KeyError(section)

    def get(self, section: str, default: Any = None) -> Any:
        try:
            return self[section]
        except KeyError:
            return default

    def to_dict(self) -> dict[str, Any]:
        """The set values as plain tables (for the run event and the history store)."""
        out: dict[str, Any] = {name: getattr(self, name).as_dict() for name in SECTIONS}
        out["profiles"] = {name: table.as_dict() for name, table in self.profiles.items()}
        return out

    def profile(self, name: str) -> ProfileSettings:
        """The ``[profiles.<name>]`` table (empty when there is none)."""
        return self.profiles.get(name) or ProfileSettings()


# --- reading ------------------------------------------------------------------------------------------

def defaults() -> Config:
    return Config()


def _suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    return close[0] if close else ""


def _did_you_mean(name: str, options: list[str]) -> str:
    close = _suggest(name, options)
    return f" (did you mean {close!r}?)" if close else ""


def _show(val: Any) -> str:
    """A value as the user wrote it in TOML (strings in double quotes)."""
    try:
        return toml_value(val)
    except TypeError:
        return repr(val)


class _Reader:
    """One read of one file: collects every problem (key, message, fix) and the old spellings seen."""

    def __init__(self, source: str, text: str | None) -> None:
        self.source = source
        self.lines = _key_lines(text) if text else {}
        self.problems: list[tuple[str, str, str]] = []

    def problem(self, key: str, message: str, fix: str = "") -> None:
        self.problems.append((key, message, fix))

    def line(self, key: str) -> int | None:
        parts = key.split(".")
        for n in range(len(parts), 0, -1):  # the key's own line, else its table's header
            if ".".join(parts[:n]) in self.lines:
                return self.lines[".".join(parts[:n])]
        return None

    def value(self, key: str, val: Any, rule: Rule, doc: str = "") -> bool:
        if rule.accepts(val):
            return True
        self.problem(key, f"{key} = {_show(val)}: expected {rule.allowed}" + (f" ({doc})" if doc else ""))
        return False

    def section(self, cls: type[Section], table: Any, where: str) -> Section:
        """``table`` read into ``cls``: checked values, old spellings renamed, unknown keys kept or refused.
        ``where`` is the table's dotted name ("" for a file whose top level is the table)."""
        sec = cls()
        if not isinstance(table, dict):
            self.problem(where, f"[{where}] must be a table, got {type(table).__name__}",
                         f"write it as a [{where}] table")
            return sec
        known = {f.name: f for f in cls.settings()}
        renamed = {old: f.name for f in known.values() for old in f.metadata["old"]}

        def dotted(key: str) -> str:
            return f"{where}.{key}" if where else key

        for key, val in table.items():
            if key in renamed:
                new = renamed[key]
                if new in table:
                    self.problem(dotted(key), f"{dotted(key)} and {dotted(new)} are the same setting",
                                 f"keep only {new}")
                    continue
                # shown as "bpllm.toml:LINE: ConfigDeprecationWarning: ..." (the file's own place, not ours)
                warnings.warn_explicit(ConfigDeprecationWarning(
                    f"{dotted(key)} is the old spelling of {new}; rename it to {new} (read as {new} for now)"),
                    ConfigDeprecationWarning, self.source, self.line(dotted(key)) or 0, module="bpllm.config")
                key = new
            spec = known.get(key)
            if spec is None:
                if cls.OPEN:
                    sec.extra[key] = val  # another ML module's key: kept, not checked
                    continue
                close = _suggest(key, list(known))
                self.problem(dotted(key), f"unknown key {dotted(key)}",
                             f"did you mean {close!r}?" if close else
                             f"remove it; [{where}] knows {', '.join(known)}")
                continue
            rule = spec.metadata["rule"]
            if self.value(dotted(key), val, rule, "" if cls.OPEN else spec.metadata["doc"]):
                setattr(sec, key, rule.read(val))
        if isinstance(sec, ProfileSettings):
            self._profile_checks(sec, where)
        return sec

    def _profile_checks(self, prof: ProfileSettings, where: str) -> None:
        if prof.tiny is not None:
            for tkey, tval in prof.tiny.items():
                rule = TINY_RULES.get(tkey)
                if rule is None:
                    close = _suggest(tkey, list(TINY_RULES))
                    self.problem(f"{where}.tiny.{tkey}", f"unknown key {where}.tiny.{tkey}",
                                 f"did you mean {close!r}?" if close else f"known: {', '.join(TINY_RULES)}")
                else:
                    self.value(f"{where}.tiny.{tkey}", tval, rule)
            hidden, heads = prof.tiny.get("hidden_size"), prof.tiny.get("num_attention_heads")
            if isinstance(hidden, int) and isinstance(heads, int) and heads > 0 and hidden % heads:
                self.problem(f"{where}.tiny.hidden_size", f"{where}.tiny.hidden_size = {hidden}: expected a "
                             f"multiple of num_attention_heads ({heads})")
        if prof.load_in_8bit is True and prof.load_in_4bit is True:
            self.problem(f"{where}.load_in_4bit", f"{where}: load_in_8bit and load_in_4bit are both true",
                         "choose one")

    def one(self, key: str, msg: str, fix: str) -> str:
        line = self.line(key)
        return f"{self.source}{f':{line}' if line else ''}: {msg}" + (f" ({fix})" if fix else "")

    def error(self) -> ConfigError:
        """One line for the user: ``file:line: invalid configuration: key = value: expected ...``."""
        if len(self.problems) == 1:
            key, msg, fix = self.problems[0]
            line = self.line(key)
            return ConfigError(f"{self.source}{f':{line}' if line else ''}: invalid configuration: {msg}", fix)
        parts = []
        for key, msg, fix in self.problems:
            line = self.line(key)
            parts.append((f"line {line}: " if line else "") + msg + (f" ({fix})" if fix else ""))
        return ConfigError(f"{self.source}: invalid configuration ({len(self.problems)} problems): "
                           + "; ".join(parts), f"fix them in {self.source}")


def validate(raw: dict[str, Any], source: str, text: str | None = None) -> Config:
    """``raw`` (parsed TOML) read over the defaults into a :class:`Config`; raises one ConfigError naming
    ``source``, the line (from ``text``), the key, its value and what is allowed."""
    reader = _Reader(source, text)
    cfg = Config(source=source)
    for sec, table in raw.items():
        if sec == "profiles":
            if not isinstance(table, dict):
                reader.problem(sec, f"[profiles] must hold [profiles.NAME] tables, got {type(table).__name__}")
                continue
            for name, ptable in table.items():
                prof = reader.section(ProfileSettings, ptable, f"profiles.{name}")
                assert isinstance(prof, ProfileSettings)
                cfg.profiles[name] = prof
            continue
        cls = SECTIONS.get(sec)
        if cls is None:
            close = _suggest(sec, [*SECTIONS, "profiles"])
            reader.problem(sec, f"unknown section [{sec}]",
                           f"did you mean [{close}]?" if close else f"remove it; known: {', '.join(SECTIONS)}")
            continue
        setattr(cfg, sec, reader.section(cls, table, sec))
    if not reader.problems:
        problem = profile_problem(cfg, cfg.run.profile)
        if problem:
            reader.problem("run.profile", f"run.profile = {_show(cfg.run.profile)}: {problem}")
        if cfg.train.report_to is not None:
            problem = report_to_problem(cfg.train.report_to)
            if problem:
                reader.problem("train.report_to", problem)
    if reader.problems:
        raise reader.error()
    return cfg


def profile_problem(cfg: Config, name: str) -> str | None:
    """Why ``name`` names no profile (None when it does): a built-in one or a [profiles.X] table."""
    builtin = list(BUILTIN_PROFILES)
    if name in builtin or name in cfg.profiles:
        return None
    tables = sorted(cfg.profiles)
    return (f"expected one of {', '.join(builtin)}" + (f" or a [profiles.X] table ({', '.join(tables)})"
            if tables else " or the name of a [profiles.X] table (none here)") + _did_you_mean(name, builtin + tables))


# experiment trackers transformers' Trainer reports to: name -> the module that must be importable
REPORT_BACKENDS: dict[str, tuple[str, ...]] = {
    "tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "trackio": ("trackio",),
    "mlflow": ("mlflow",), "comet_ml": ("comet_ml",), "neptune": ("neptune",), "clearml": ("clearml",),
    "dagshub": ("dagshub",), "dvclive": ("dvclive",), "swanlab": ("swanlab",), "codecarbon": ("codecarbon",),
    "azure_ml": ("azureml",), "flyte": ("flytekit",),
}


def report_to_list(value: Any) -> list[str]:
    """``[train] report_to`` as the list trl takes ("none" or absent: [])."""
    names = [value] if isinstance(value, str) else list(value or [])
    return [n for n in names if n != "none"]


def report_to_problem(value: Any) -> str | None:
    """Why ``[train] report_to`` cannot work, checked with the config (a missing tracker package would
    otherwise crash training after the base model loaded), or None."""
    if not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))):
        return f"train.report_to = {value!r}: expected a list of names, e.g. [\"tensorboard\"] (or \"none\")"
    for name in report_to_list(value):
        modules = REPORT_BACKENDS.get(name)
        if modules is None:
            return (f"train.report_to: unknown tracker {name!r}{_did_you_mean(name, list(REPORT_BACKENDS))}; "
                    f"known: {', '.join(sorted(REPORT_BACKENDS))} or \"none\"")
        if not any(importlib.util.find_spec(m) is not None for m in modules):
            return (f"train.report_to: {name!r} needs the {modules[0]!r} package, which is not installed here; "
                    f"`pip install {modules[0]}` or remove it from report_to")
    return None


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """A TOML file's table and text; ConfigError (naming the file and the fix) when it cannot be read."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found", "create a workspace with `bpllm init DIR`") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})", "save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})", "check its permissions") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}", "fix the TOML syntax there") from None


def load_config(path: str | Path) -> Config:
    """The one reader of bpllm.toml: parse, check and type it (ConfigError names the file on any problem)."""
    path = Path(path)
    raw, text = read_toml(path)
    return validate(raw, str(path), text)


def read_section(cls: type[Section], table: dict[str, Any], source: str, where: str = "",
                 text: str | None = None) -> tuple[Section, list[str]]:
    """One table read with ``cls``'s rules, leniently: a bad setting keeps its default and is named in the
    returned one-line messages (the TUI's own tui.toml, the keys of ``[tui]``, is read so)."""
    reader = _Reader(source, text)
    sec = reader.section(cls, table, where)
    return sec, [reader.one(*p) for p in reader.problems]


# --- line numbers for messages --------------------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_ASSIGN = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")


def _dotted(text: str) -> list[str]:
    return [p.strip().strip("\"'") for p in re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", text)]


def _key_lines(text: str) -> dict[str, int]:
    """Dotted key -> the line that sets it (tables -> their header line); best effort, for messages."""
    found: dict[str, int] = {}
    table: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        m = _HEADER.match(line)
        if m:
            table = _dotted(m.group(1))
            found.setdefault(".".join(table), number)
            continue
        m = _ASSIGN.match(line)
        if m:
            found.setdefault(".".join(table + _dotted(m.group(1))), number)
    return found


# --- writing TOML (tomllib reads only; the config is small and flat enough for this) ---------------------

def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def field_docs(cls: type[Section]) -> dict[str, str]:
    """name -> one-line doc of a section's settings (for help screens and docs)."""
    return {f.name: f.metadata["doc"] for f in cls.settings()}
