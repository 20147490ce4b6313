"""`tinylm space`: the Space folder (--dry-run), its upload to the Hub stand-in on 127.0.0.1 (tests/hub_server.py),
and its app started the way a Space starts it (`python app.py`) and asked for a text through the Gradio API.

Pushes run in a subprocess (`python -m tinylm space ...`): huggingface_hub reads HF_ENDPOINT and HF_HOME when it is
imported, as in tests/test_hub.py."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from hub_server import HubServer

import tinylm
from tinylm.cli import main

pytest.importorskip("gradio", reason="the Space serves the playground, which needs gradio (pip install -e '.[app]')")
from gradio_client import Client  # noqa: E402 - installed with gradio

from tinylm.publishing.space import build_space  # noqa: E402

TOKEN = "hf_test_space_token"
REPO = "alice/tiny-space"
RUN_FILES = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}


@pytest.fixture(scope="module")
def space(trained_run, tmp_path_factory) -> Path:
    """The Space folder of the tiny trained run, written through the Python API."""
    return build_space([trained_run.run_dir], tmp_path_factory.mktemp("space") / "space", repo_id=REPO)


def folder_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def front_matter(readme: str) -> tuple[dict, str]:
    match = re.match(r"---\n(.*?)\n---\n(.*)", readme, re.DOTALL)
    assert match, readme[:200]
    return yaml.safe_load(match.group(1)), match.group(2)


def hub_env(hub: HubServer, home: Path, **changes: str | None) -> dict[str, str]:
    """The environment of a user of `hub` whose Hugging Face cache and token file live in `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HOME=str(home), HF_HUB_OFFLINE="0",
               HF_HUB_DISABLE_TELEMETRY="1")
    env.update(changes)
    return {k: v for k, v in env.items() if v is not None}


def run_cli(*args, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinylm", *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=300)


# -- the folder ------------------------------------------------------------------------------------------
def test_dry_run_writes_app_pinned_requirements_readme_and_only_what_loading_needs(trained_run, space, tmp_path,
                                                                                   monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["space", str(trained_run.run_dir), "--repo", REPO, "--dry-run"]) == 0
    folder = tmp_path / "space-tiny-space"  # the default folder, in the working directory
    out = capsys.readouterr().out
    assert "space-tiny-space" in out and "python app.py" in out
    files = folder_files(folder)
    assert files == folder_files(space)  # the CLI writes what the API writes

    # The run's loading files, byte for byte; no checkpoint, optimizer state or records.
    assert set(files) == {"README.md", "app.py", "requirements.txt", *(f"runs/run/{name}" for name in RUN_FILES)}
    for name in RUN_FILES:
        assert files[f"runs/run/{name}"] == (trained_run.run_dir / name).read_bytes()
    assert (trained_run.run_dir / "checkpoint").is_dir()  # there was one to leave out

    requirements = files["requirements.txt"].decode().splitlines()
    assert f"tinylm=={tinylm.__version__}" in requirements
    assert f"gradio=={version('gradio')}" in requirements
    assert f"torch=={version('torch').split('+')[0]}+cpu" in requirements
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in requirements
    pins = [line for line in requirements if not line.startswith(("#", "--"))]
    assert all(re.fullmatch(r"[a-z0-9._-]+==[\w.+]+", line) for line in pins), pins

    meta, body = front_matter(files["README.md"].decode())
    assert meta["sdk"] == "gradio" and meta["sdk_version"] == version("gradio") and meta["app_file"] == "app.py"
    assert meta["title"] == "tiny-space" and meta["pinned"] is False and meta["license"] == "mit"
    assert {"emoji", "colorFrom", "colorTo"} <= set(meta) and "tinylm" in meta["tags"]
    assert 0 < len(meta["short_description"]) <= 60
    assert "models" not in meta  # a local run was never pushed
    best = min(trained_run.metrics, key=lambda r: r["val_loss"])
    assert f"| run | rnn | {trained_run.module.describe()} | {trained_run.num_parameters():,} | " \
           f"{best['val_loss']:.4f}" in body
    assert "python app.py" in body


# -- errors ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case, message", [
    ("no runs", "give at least one run"),
    ("missing run", "does not exist"),
    ("bad repo", "is not a Hub repo id"),
    ("not a trained run", "is not a trained tinylm run (no model.safetensors"),
    ("out inside the run", "inside the run"),
    ("earlier folder", "pass --overwrite"),
])
def test_mistakes_are_one_line_and_exit_2(trained_run, space, tmp_path, capsys, case, message):
    run_dir, repo, out = str(trained_run.run_dir), REPO, tmp_path / "out"
    if case == "not a trained run":
        run_dir = tmp_path / "half"
        run_dir.mkdir()
        shutil.copyfile(trained_run.run_dir / "config.json", run_dir / "config.json")
    runs = {"no runs": [], "missing run": [str(tmp_path / "missing")]}.get(case, [str(run_dir)])
    repo = "not a repo id" if case == "bad repo" else repo
    out = {"out inside the run": trained_run.run_dir / "space", "earlier folder": space}.get(case, out)
    before = folder_files(space)
    assert main(["space", *runs, "--repo", repo, "--dry-run", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists() and not (trained_run.run_dir / "space").exists()
    assert folder_files(space) == before


@pytest.mark.parametrize("case, message", [
    ("no token", "no Hugging Face token"),
    ("unreachable", "http://127.0.0.1:9 is unreachable"),
])
def test_push_errors_are_one_line(trained_run, tmp_path, case, message):
    with HubServer(token=TOKEN) as hub:
        changes = {"no token": {"HF_TOKEN": None}, "unreachable": {"HF_ENDPOINT": "http://127.0.0.1:9"}}[case]
        result = run_cli("space", trained_run.run_dir, "--repo", REPO, env=hub_env(hub, tmp_path / "hf", **changes))
        assert result.returncode == 2 and result.stdout == ""
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert REPO not in hub.repos


# -- the push --------------------------------------------------------------------------------------------
def test_push_creates_a_gradio_space_holding_the_dry_run_folder(trained_run, space, tmp_path):
    with HubServer(token=TOKEN) as hub:
        result = run_cli("space", trained_run.run_dir, "--repo", REPO, "--private",
                         env=hub_env(hub, tmp_path / "hf"))
        assert result.returncode == 0, result.stderr
        assert f"{hub.url}/spaces/{REPO}" in result.stdout
        repo = hub.repos[REPO]
        assert (repo.type, repo.sdk, repo.private) == ("space", "gradio", True)
        assert len(repo.commits) == 1  # one upload
        assert hub.files(REPO) == folder_files(space)
        assert ("POST", f"/api/spaces/{REPO}/commit/main") in hub.requests


# -- the app ---------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_folder_app_starts_and_answers_a_generation(space, tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_SERVER_NAME"}  # the local default: loopback
    env["GRADIO_SERVER_PORT"] = str(port)
    log = tmp_path / "app.log"
    with open(log, "w") as out:
        app = subprocess.Popen([sys.executable, "app.py"], cwd=space, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 180
        while f"tinylm playground: {url}" not in log.read_text():
            assert app.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.5)
        client = Client(url, verbose=False, analytics_enabled=False, download_files=False)
        status, text, chart = client.predict("ROMEO:", 0.8, 0, 1.0, 40, "1", False, api_name="/generate")
        print(f"the Space's app answered: {text!r}")
        assert status.startswith("Done") and text.startswith("ROMEO:") and len(text) > len("ROMEO:")
    finally:
        app.terminate()
        try:
            app.wait(timeout=20)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait()
