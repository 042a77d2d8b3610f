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
from pathlib import Path

import pytest

from engine.workspace.config import (FREE_RULES, PROFILE_RULES, RULES, SCHEMA, TINY_RULES, ConfigError, load_config,
                           validate)
from engine.ml.profiles import PROFILES, TINY_BASE_DEFAULTS, Profile

ROOT = Path(__file__).resolve().parents[1]

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


def test_every_key_has_a_rule_and_agrees_with_its_schema_and_profile():
    for sec, keys in SCHEMA.items():
        for key, (types, _default, _doc) in keys.items():
            rule = RULES.get(sec, {}).get(key)
            assert rule is not None, f"{sec}.{key} has no rule in engine.workspace.config.RULES"
            assert set(rule.types) == set(types), f"{sec}.{key}: rule types {rule.types} vs schema {types}"
    for field in dataclasses.fields(Profile):
        assert field.name in PROFILE_RULES, f"Profile.{field.name} has no rule in PROFILE_RULES"
    assert set(TINY_BASE_DEFAULTS) == set(TINY_RULES)
    # the defaults themselves pass: the built-in profiles, the tiny base and the starter file
    for prof in PROFILES.values():
        table = {k: v for k, v in prof.to_dict().items() if v is not None}
        validate({"profiles": {"p": table}, "run": {"profile": "p"}}, "built-in")
    load_config(ROOT / "dsl" / "packs" / "blueprint" / "starter" / "bpllm.toml")
    assert set(FREE_RULES) <= {"profiles", "exam", "grading", "health", "train", "tui"}


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
