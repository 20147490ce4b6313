"""`tinylm env` (tinylm/machine/report.py): what a bug report needs, on both sides of the bf16 choice."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tinylm.machine.devices import threads_beside
from tinylm.machine.report import environment_report, format_environment, load_line


def tinylm_env(*args, **env):
    return subprocess.run([sys.executable, "-m", "tinylm", "env", *args], capture_output=True, text=True,
                          timeout=300, check=True, env={**os.environ, **env})


def test_env_json_reports_versions_devices_cpu_choices_and_extras():
    report = json.loads(tinylm_env("--json").stdout)
    assert report["torch"] and report["python"] and report["tinylm"]
    assert {"model", "capability", "native_bf16", "int8_matmul", "physical_cores"} <= report["cpu"].keys()
    assert set(report["auto"]) == {"lstm", "gru", "gpt", "markov"}
    for choice in report["auto"].values():
        assert choice["training"] in ("bf16", "fp32") and choice["generation"] in ("fp32", "bf16", "int8")
    assert "transformers" in report["extras"] and "wandb" in report["extras"]
    cores, taken = report["cpu"]["physical_cores"], report["load"]["cpus_taken_by_others"]
    assert report["threads"]["default"] == threads_beside(taken, cores)  # all cores on a quiet machine


@pytest.mark.parametrize("forced", ["0", "1"])
def test_env_shows_the_forced_side(forced):
    text = tinylm_env(TINYLM_CPU_BF16=forced).stdout
    assert f"TINYLM_CPU_BF16={forced}" in text
    lstm = next(line for line in text.splitlines() if line.startswith("auto, lstm"))
    if forced == "0":
        assert "native bf16: no" in text and "training fp32 (no native bf16" in lstm
    else:
        assert "native bf16: yes" in text


def test_env_says_when_other_processes_keep_the_machine_busy():
    busy = load_line({"cpus_taken_by_others": 1.0, "load_average_1min": 3.2}, 2)
    assert busy.startswith("load            BUSY: other processes keep 1.0 of 2 cores busy; load average 3.2")
    assert "cores left free" in busy
    quiet = load_line({"cpus_taken_by_others": 0.1, "load_average_1min": None}, 2)
    assert quiet == "load            quiet: other processes keep 0.1 of 2 cores busy"
    assert "load            " in format_environment(environment_report(probe=False))


def test_text_form_without_probing():
    report = environment_report(probe=False)
    text = format_environment(report)
    assert "auto," not in text and "1 threads" not in text and report["torch"] in text
