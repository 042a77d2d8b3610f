"""bpllm.toml: every setting is type- and range-checked when the config is read (issue 13, item 7).

A bad value gives one line naming the file, the line, the key, the value and what is allowed, from
every command that reads the config (run, status, validate, bpllm-tui), with exit 1 and no traceback.
"""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import tomllib
import types
import typing
import warnings
from pathlib import Path

import pytest

from dsl.config import (BUILTIN_PROFILES, SECTIONS, TINY_RULES, Config, ConfigDeprecationWarning, ProfileSettings,
                        TrainSection, load_config, validate)
from dsl.errors import BpllmError
from engine.workspace.config import ConfigError
from engine.ml.profiles import PROFILES, TINY_BASE_DEFAULTS, Profile

ROOT = Path(__file__).resolve().parents[2]

# (TOML appended to a valid config, the key the message must name, the value as written, allowed words)
BAD = [
    ('[profiles.tiny]\nbatch_size = "big"\n', "profiles.tiny.batch_size", '"big"', "whole number >= 1"),
    ("[profiles.tiny]\nlora_r = -3\n", "profiles.tiny.lora_r", "-3", "whole number >= 1"),
    ("[synthetic]\ncount = -5\n", "synthetic.count", "-5", "whole number >= 0"),
    ("[profiles.tiny]\nlora_dropout = 1.5\n", "profiles.tiny.lora_dropout", "1.5", "[0, 1)"),
    ("[profiles.tiny]\nlearning_rate = 0\n", "profiles.tiny.learning_rate", "0", "> 0"),
    ("[profiles.tiny]\nmax_steps = 0\n", "profiles.tiny.max_steps", "0", "-1 (no cap)"),
    ("[profiles.tiny]\nbf16 = 1\n", "profiles.tiny.bf16", "1", "true or false"),
    ('[profiles.tiny]\nlauncher = "mpi"\n', "profiles.tiny.launcher", '"mpi"', '"inprocess", "accelerate"'),
    ("[profiles.tiny]\nwarmup_ratio = -0.1\n", "profiles.tiny.warmup_ratio", "-0.1", "[0, 1]"),
    ("[profiles.tiny]\ntarget_modules = []\n", "profiles.tiny.target_modules", "[]", "list of module names"),
    ("[profiles.tiny]\naccelerate_config = 3\n", "profiles.tiny.accelerate_config", "3", "path"),
    ('[profiles.tiny]\nmodel = ""\n', "profiles.tiny.model", '""', "non-empty string"),
    ("[profiles.tiny]\ntiny = { hidden_size = 0 }\n", "profiles.tiny.tiny.hidden_size", "0", ">= 1"),
    ("[profiles.tiny]\ntiny = { hiden_size = 64 }\n", "profiles.tiny.tiny.hiden_size", "", "did you mean"),
    ("[profiles.tiny]\ntiny = { hidden_size = 100, num_attention_heads = 3 }\n", "profiles.tiny.tiny.hidden_size",
     "100", "multiple of num_attention_heads"),
    ("[profiles.tiny]\nload_in_8bit = true\nload_in_4bit = true\n", "profiles.tiny", "", "choose one"),
    ("[train]\nepochs = -1\n", "train.epochs", "-1", "> 0"),
    ("[exam]\nbatch_size = -1\n", "exam.batch_size", "-1", ">= 1"),  # 0 is valid: sized from free GPU memory
    ('[exam]\nconstrained = "yes"\n', "exam.constrained", '"yes"', "true or false"),
    ("[grading]\ncontrast_share = 2\n", "grading.contrast_share", "2", "[0, 1]"),
    ("[grading]\ndraft_prompts = -1\n", "grading.draft_prompts", "-1", ">= 1"),
    ("[tui]\nlog_lines = 0\n", "tui.log_lines", "0", ">= 1"),
    ("[data]\nvalidation_fraction = 1.0\n", "data.validation_fraction", "1.0", "[0, 1)"),
    ('[data]\nintegrate = "some"\n', "data.integrate", '"some"', '"examined", "all", "none"'),
    ("[data]\nsystem_prompt = 5\n", "data.system_prompt", "5", "path"),
    ("[data]\nseed = -1\n", "data.seed", "-1", ">= 0"),
    ("[stall]\nkill_s = inf\n", "stall.kill_s", "inf", "> 0"),
    ("[stall]\nwarn_s = -1\n", "stall.warn_s", "-1", "> 0"),
    ("[retry]\nbackoff_factor = 0.5\n", "retry.backoff_factor", "0.5", ">= 1"),
    ("[backup]\nkeep_safety = 0\n", "backup.keep_safety", "0", ">= 1"),
    ("[backup]\ninclude = [1]\n", "backup.include", "[1]", "list of non-empty strings"),
    ('[telemetry]\nroles = { gpu0 = "training" }\n', "telemetry.roles", "", "GPU index"),
    ('[run]\nprofile = "nosuch"\n', "run.profile", '"nosuch"', "llama-70b-8bit"),
]


def _config_with(tmp_path: Path, extra: str) -> Path:
    """The starter bpllm.toml with ``extra`` merged in (a section already there is replaced)."""
    template = (ROOT / "dsl" / "packs" / "blueprint" / "starter" / "bpllm.toml").read_text(encoding="utf-8")
    header, body = extra.split("\n", 1)
    if re.search(rf"(?m)^{re.escape(header)}$", template):  # e.g. [synthetic]: put the bad key inside the existing table, in place of its own
        for key in re.findall(r"(?m)^(\w+)\s*=", body):
            template = re.sub(rf"(?m)^{key}\s*=.*$", "", template)
        template = re.sub(rf"(?m)^{re.escape(header)}\n", lambda _m: extra, template, count=1)
    else:
        template += "\n" + extra
    path = tmp_path / "bpllm.toml"
    path.write_text(template, encoding="utf-8")
    return path


@pytest.mark.parametrize("extra,key,value,allowed", BAD, ids=[b[1] + "=" + b[2] for b in BAD])
def test_bad_value_is_one_line_naming_file_line_key_value_and_allowed(tmp_path, extra, key, value, allowed):
    path = _config_with(tmp_path, extra)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}:"), msg
    assert key in msg and allowed in msg, msg
    if value:
        assert f"{key} = {value}" in msg, msg
    line = int(msg[len(str(path)) + 1:].split(":", 1)[0])
    text_line = path.read_text(encoding="utf-8").splitlines()[line - 1]
    assert text_line.strip() and text_line in extra.splitlines(), f"line {line} is not a bad line: {text_line!r}"


_PY = {int: (int,), float: (float, int), str: (str,), bool: (bool,), list: (list,), dict: (dict,)}


def test_every_field_has_a_doc_and_a_rule_that_agrees_with_its_type_and_default():
    for name, cls in [*SECTIONS.items(), ("profiles.X", ProfileSettings)]:
        hints = typing.get_type_hints(cls)
        for f in cls.settings():
            doc, rule = f.metadata["doc"], f.metadata["rule"]
            assert doc.strip() and "\n" not in doc, f"{name}.{f.name}: a one-line doc"
            hint = hints[f.name]
            members = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
            allowed = {t for arg in members for t in _PY.get(typing.get_origin(arg) or arg, ())}
            assert set(rule.types) <= allowed, f"{name}.{f.name}: rule types {rule.types} vs type {hints[f.name]}"
            default = f.default_factory() if f.default is dataclasses.MISSING else f.default
            assert default is None or rule.accepts(default), f"{name}.{f.name}: default {default!r} breaks its rule"
    # profiles are part of the same schema: every Profile field is a [profiles.X] / [train] setting
    for field in dataclasses.fields(Profile):
        assert field.name in {f.name for f in ProfileSettings.settings()}, f"Profile.{field.name} not in the schema"
    assert {f.name for f in ProfileSettings.settings()} <= {f.name for f in TrainSection.settings()}
    assert set(TINY_BASE_DEFAULTS) == set(TINY_RULES)
    assert tuple(PROFILES) == BUILTIN_PROFILES
    # the defaults themselves pass: the built-in profiles, the tiny base and the starter file
    for prof in PROFILES.values():
        table = {k: v for k, v in prof.to_dict().items() if v is not None}
        validate({"profiles": {"p": table}, "run": {"profile": "p"}}, "built-in")
    load_config(ROOT / "dsl" / "packs" / "blueprint" / "starter" / "bpllm.toml")


def test_typed_defaults_and_values(tmp_path):
    cfg = load_config(ROOT / "dsl" / "packs" / "blueprint" / "starter" / "bpllm.toml")
    assert isinstance(cfg, Config) and cfg == dataclasses.replace(Config(), source=cfg.source)
    assert cfg.retry.max_attempts == 3 and cfg.stall.kill_s == 600.0 and cfg.workspace.language == "blueprint"
    assert cfg.dsl.unknown_nodes == "error" and cfg.backup.include[0] == "bpllm.toml"
    path = tmp_path / "bpllm.toml"
    path.write_text('[workspace]\nlanguage = "toy"\n[retry]\nbackoff_s = 3\n[stall]\nkill_s = 60\n'
                    '[exam]\nbatch_size = 4\n', encoding="utf-8")
    cfg = load_config(path)
    assert cfg.workspace.language == "toy"
    assert cfg.retry.backoff_s == 3.0 and isinstance(cfg.retry.backoff_s, float)  # a whole number read as a float
    assert cfg.stall.kill_after("training") == 10800.0 and cfg.stall.kill_after("data") == 60.0
    assert cfg.exam.batch_size == 4 and cfg.exam.max_new_tokens is None  # unset: the profile's value
    assert cfg.source == str(path) and cfg.to_dict()["retry"]["backoff_s"] == 3.0


def test_a_profile_table_is_typed_and_checked(tmp_path):
    path = tmp_path / "bpllm.toml"
    path.write_text('[run]\nprofile = "mybig"\n[profiles.mybig]\nbase = "llama-70b-8bit"\n'
                    'model = "/models/llama70b"\nlora_r = 64\nlora_dropout = 0\ntiny = { hidden_size = 64 }\n'
                    '[train]\nepochs = 3\n', encoding="utf-8")
    cfg = load_config(path)
    prof = cfg.profiles["mybig"]
    assert isinstance(prof, ProfileSettings) and prof.base == "llama-70b-8bit" and prof.lora_r == 64
    assert prof.lora_dropout == 0.0 and prof.batch_size is None and prof.tiny == {"hidden_size": 64}
    assert prof.overrides() == {"base": "/models/llama70b", "lora_r": 64, "lora_dropout": 0.0,
                                "tiny": {"hidden_size": 64}}
    assert cfg.train.epochs == 3.0 and cfg.profile("nosuch") == ProfileSettings()
    path.write_text('[run]\nprofile = "mybig"\n[profiles.mybig]\nlora_r = "big"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r":4: invalid configuration: profiles\.mybig\.lora_r = \"big\""):
        load_config(path)


def test_unknown_key_names_file_line_key_and_the_fix(tmp_path):
    path = tmp_path / "bpllm.toml"
    path.write_text("[stall]\nwarn_s = 10.0\nkil_s = 60\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert isinstance(e.value, BpllmError) and e.value.hint == "did you mean 'kill_s'?"
    assert e.value.message == f"{path}:3: invalid configuration: unknown key stall.kil_s"
    assert str(e.value) == f"{path}:3: invalid configuration: unknown key stall.kil_s (did you mean 'kill_s'?)"
    path.write_text("[stal]\nkill_s = 60\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r":1: invalid configuration: unknown section \[stal\] \(did you mean \[stall\]\?\)"):
        load_config(path)


def test_wrong_type_names_the_key_value_and_what_is_allowed(tmp_path):
    path = tmp_path / "bpllm.toml"
    path.write_text('[retry]\nmax_attempts = "3"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value) == (f'{path}:2: invalid configuration: retry.max_attempts = "3": expected a whole number '
                            ">= 1 (attempts per step for retryable errors (OOM, network, timeout))")
    path.write_text("retry = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r":1: invalid configuration: \[retry\] must be a table, got int"):
        load_config(path)


def test_old_spelling_is_read_with_a_warning_naming_file_line_key_and_new_spelling(tmp_path):
    path = tmp_path / "bpllm.toml"
    path.write_text("[profiles.tiny]\nmax_seq_length = 1024\nlr = 0.001\n", encoding="utf-8")
    with pytest.warns(ConfigDeprecationWarning) as caught:
        cfg = load_config(path)
    assert cfg.profiles["tiny"].max_seq_len == 1024 and cfg.profiles["tiny"].learning_rate == 0.001
    messages = [f"{w.filename}:{w.lineno}: {w.message}" for w in caught]  # as Python shows a warning
    assert messages == [
        f"{path}:2: profiles.tiny.max_seq_length is the old spelling of max_seq_len; rename it to max_seq_len "
        "(read as max_seq_len for now)",
        f"{path}:3: profiles.tiny.lr is the old spelling of learning_rate; rename it to learning_rate "
        "(read as learning_rate for now)"]
    assert all("\n" not in m for m in messages)
    path.write_text("[train]\nmax_seq_length = 1024\nmax_seq_len = 512\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="train.max_seq_length and train.max_seq_len are the same setting"):
        load_config(path)
    path.write_text("[profiles.tiny]\nmax_seq_len = 1024\n", encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new spelling warns about nothing
        load_config(path)


def test_reading_the_config_sets_no_global(tmp_path):
    """Every loaded module's globals are the same objects after a read (the old reader set one in rows)."""
    import engine.dataset.rows  # noqa: F401 - the module whose global the old reader set
    from engine.workspace.workspace import Workspace, init_workspace

    init_workspace(tmp_path / "ws")
    cfg_path = tmp_path / "ws" / "bpllm.toml"
    cfg_path.write_text(cfg_path.read_text(encoding="utf-8").replace('"error"', '"warning"'), encoding="utf-8")
    mods = {name: m for name, m in sys.modules.items()
            if m is not None and (name.split(".")[0] in ("engine", "dsl", "bpllm_tui"))}
    before = {name: dict(vars(m)) for name, m in mods.items()}
    assert Workspace(tmp_path / "ws").config.dsl.unknown_nodes == "warning"
    changed = [f"{name}.{k}" for name, m in mods.items() for k, v in vars(m).items()
               if k in before[name] and before[name][k] is not v]
    assert changed == []


def test_keys_of_another_ml_module_pass_but_known_keys_are_checked():
    cfg = validate(tomllib.loads("[train]\noom_once = true\n[profiles.tiny]\nmy_plugin_knob = 3\n"), "f")
    assert cfg["train"]["oom_once"] is True and cfg["profiles"]["tiny"]["my_plugin_knob"] == 3
    with pytest.raises(ConfigError, match="train.batch_size = 0"):
        validate({"train": {"batch_size": 0}}, "f")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("BPLLM_WORKSPACE", None)
    return env


@pytest.mark.parametrize("extra,key,value", [(b[0], b[1], b[2]) for b in BAD[:3]], ids=["batch_size", "lora_r", "count"])
def test_commands_report_a_bad_setting_as_one_line_and_exit_1(tmp_path, extra, key, value):
    ws = tmp_path / "ws"
    r = subprocess.run([sys.executable, "-m", "engine.cli", "init", str(ws)], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (ws / "bpllm.toml").write_text(_config_with(tmp_path, extra).read_text(encoding="utf-8"), encoding="utf-8")
    dsl = tmp_path / "x.dsl"
    dsl.write_text("BLUEPRINT: BP_X\nPARENT: Actor\n\nGRAPH: EventGraph\nNODE n1: Event_BeginPlay\n", encoding="utf-8")
    commands = {
        "bpllm run": [sys.executable, "-m", "engine.cli", "run", "-w", str(ws)],
        "bpllm status": [sys.executable, "-m", "engine.cli", "status", "-w", str(ws)],
        "bpllm validate": [sys.executable, "-m", "engine.cli", "validate", str(dsl)],
        "bpllm-tui": [sys.executable, "-m", "bpllm_tui.app", "-w", str(ws)],
    }
    for name, argv in commands.items():
        r = subprocess.run(argv, cwd=ws, env=_env(), capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 1, (name, r.stdout, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in r.stderr, (name, r.stderr)
        assert lines[0].startswith(f"{name}: ") and "bpllm.toml:" in lines[0], (name, lines[0])
        assert f"{key} = {value}" in lines[0] and "expected" in lines[0], (name, lines[0])
    assert not (ws / "runs").exists() or not any((ws / "runs").iterdir()), "a bad config must not start a run"


def test_run_refuses_an_unknown_profile_name(tmp_path):
    ws = tmp_path / "ws"
    assert subprocess.run([sys.executable, "-m", "engine.cli", "init", str(ws)], cwd=ROOT, env=_env(),
                          capture_output=True, timeout=120).returncode == 0
    r = subprocess.run([sys.executable, "-m", "engine.cli", "run", "-w", str(ws), "--profile", "tinny"], cwd=ROOT,
                       env=_env(), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "--profile tinny" in r.stderr and "did you mean 'tiny'" in r.stderr


def test_validate_reads_the_workspace_policy_through_the_one_loader_and_dsl_imports_no_engine(tmp_path):
    """`bpllm validate` honours [dsl] unknown_nodes via dsl.config (dsl/ may not import engine/)."""
    import ast

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "bpllm.toml").write_text('[dsl]\nunknown_nodes = "warning"\n', encoding="utf-8")
    dsl = tmp_path / "x.dsl"
    dsl.write_text("BLUEPRINT: BP_X\nPARENT: Actor\n\nGRAPH: EventGraph\nNODE n1: Event_BeginPlay\n"
                   "NODE n2: MyStudioNode\nEXEC n1.Then -> n2.Execute\n", encoding="utf-8")
    argv = [sys.executable, "-m", "engine.cli", "validate", str(dsl)]
    r = subprocess.run(argv, cwd=ws, env=_env() | {"BPLLM_WORKSPACE": str(ws)}, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "1 warning(s)" in r.stderr, (r.stdout, r.stderr)  # the unknown node
    (ws / "bpllm.toml").write_text('[dsl]\nunknown_nodes = "error"\n', encoding="utf-8")
    r = subprocess.run(argv, cwd=ws, env=_env() | {"BPLLM_WORKSPACE": str(ws)}, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1, (r.stdout, r.stderr)
    for path in (ROOT / "dsl").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            assert not [n for n in names if n.split(".")[0] in ("engine", "bpllm_tui")], f"{path} imports {names}"
