"""Publishing on the Hub and loading back, against a Hub stand-in on 127.0.0.1 (tests/hub_server.py).

huggingface_hub reads HF_ENDPOINT and HF_HOME when it is imported, so every push and Hub load runs in a
subprocess (`python -m tinylm ...`) with its own HF_ENDPOINT / HF_TOKEN / HF_HOME, as a user would run it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_config
from hub_server import HubServer, Repo

import tinylm
from tinylm.io import read_jsonl
from tinylm.loading import WEIGHTS
from tinylm.publishing.hub import REBUILT_RUNS, RUN_SUBFOLDER, run_dir_of

TOKEN = "hf_test_write_token"
SAMPLING = ["--prompt", "ROMEO:", "--max-new-tokens", "60", "--temperature", "0.8", "--seed", "7"]
PUSHED = {"README.md", "loss.png", "config.json", "model.safetensors", "tokenizer.json",
          "tokenizer_config.json", "special_tokens_map.json", "metrics.jsonl", "samples.jsonl",
          "summary.json"}
GENERATE = ("import sys, tinylm; print(tinylm.load(sys.argv[1]).generate('ROMEO:', max_new_tokens=60, "
            "temperature=0.8, seed=7), end='')")


@pytest.fixture
def hub():
    with HubServer(token=TOKEN) as server:
        yield server


def hub_env(hub: HubServer, home: Path, **changes: str) -> dict[str, str]:
    """The environment of a user of `hub` whose Hugging Face cache and token file live in `home`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=hub.url, HF_TOKEN=TOKEN, HF_HOME=str(home), HF_HUB_OFFLINE="0",
               HF_HUB_DISABLE_TELEMETRY="1")
    env.update(changes)
    return {k: v for k, v in env.items() if v is not None}


def run_cli(*args, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinylm", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=300)


def run_python(code: str, *args, env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def fingerprint(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def folder_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def split_card(card: str) -> tuple[dict, str]:
    match = re.match(r"---\n(.*?)\n---\n(.*)", card, re.DOTALL)
    assert match, card[:200]
    return yaml.safe_load(match.group(1)), match.group(2)


def check_card(card: str, run_dir: Path, repo_id: str) -> None:
    """The model card says what the run is, with the run's own numbers and samples."""
    meta, body = split_card(card)
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    best = min(metrics, key=lambda r: r["val_loss"])
    assert meta["license"] == "mit" and meta["language"] == ["en"]
    assert meta["pipeline_tag"] == "text-generation"
    assert meta["library_name"] == "tinylm"
    assert "datasets" not in meta and "trained from scratch with tinylm on corpus.txt" in body  # a local file
    assert {"tinylm", "text-generation", "char-level", "lstm"} <= set(meta["tags"])
    [result] = meta["model-index"][0]["results"]
    values = {m["type"]: m["value"] for m in result["metrics"]}
    assert values["perplexity"] == pytest.approx(best["val_perplexity"], abs=1e-3)
    assert values["loss"] == pytest.approx(best["val_loss"], abs=1e-4)
    assert result["task"]["type"] == "text-generation"

    for heading in ["## Model", "## Training", "### Validation after each epoch", "## Samples",
                    "## Limitations", "## Usage", "![Training and validation loss per epoch](loss.png)"]:
        assert heading in body
    summary = json.loads((run_dir / "summary.json").read_text())
    assert f"{summary['parameters']:,}" in body and summary["hardware"] in body
    assert "| hidden | 48 |" in body.replace("`", "")
    for record in metrics:  # one table row per epoch, with its validation loss
        row = rf"\| {record['epoch']} \| {record['step']} \| [0-9.]+ \| {record['val_loss']:.4f} \|"
        assert re.search(row, body), row
    assert len(re.findall(r"\*\*temperature [0-9.]+\*\*", body)) == 3
    assert f'tinylm.load("{repo_id}")' in body and f"tinylm sample {repo_id}" in body
    assert "pipeline(" not in body  # the transformers snippet is for GPT runs only


def test_push_uploads_run_and_card_and_hub_load_gives_the_same_samples(trained_run, hub, tmp_path):
    run_dir = trained_run.run_dir
    before = fingerprint(run_dir)
    env = hub_env(hub, tmp_path / "hf-home")
    result = run_cli("push", run_dir, "--repo", "alice/tiny-lstm", "--language", "en", env=env)
    assert result.returncode == 0, result.stderr
    assert f"{hub.url}/alice/tiny-lstm" in result.stdout

    files = hub.files("alice/tiny-lstm")
    assert set(files) == PUSHED
    for name in PUSHED - {"README.md"}:
        assert files[name] == (run_dir / name).read_bytes(), name
    check_card(files["README.md"].decode(), run_dir, "alice/tiny-lstm")
    assert fingerprint(run_dir) == before

    # tinylm.load("alice/tiny-lstm") in a fresh process: downloads the run, and samples exactly like the run.
    local = run_python(GENERATE, run_dir, env=env)
    assert run_python(GENERATE, "alice/tiny-lstm", env=env) == local and local.startswith("ROMEO:")
    # The CLI too, then from the cache alone with the Hub out of reach.
    assert run_cli("sample", "alice/tiny-lstm", *SAMPLING, env=env).stdout == \
        run_cli("sample", run_dir, *SAMPLING, env=env).stdout
    offline = hub_env(hub, tmp_path / "hf-home", HF_HUB_OFFLINE="1", HF_ENDPOINT="http://127.0.0.1:9")
    assert run_python(GENERATE, "alice/tiny-lstm", env=offline) == local


def test_dry_run_writes_exactly_what_is_uploaded_and_loads_like_the_repo(trained_run, hub, tmp_path):
    run_dir = trained_run.run_dir
    env = hub_env(hub, tmp_path / "hf")
    assert run_cli("push", run_dir, "--repo", "alice/tiny-lstm", "--language", "en", env=env).returncode == 0
    before = fingerprint(run_dir)
    dry = tmp_path / "dry"
    assert tinylm.push(run_dir, "alice/tiny-lstm", dry_run=dry, language="en") == str(dry)
    assert folder_files(dry) == hub.files("alice/tiny-lstm")  # the same bytes, card included
    assert fingerprint(run_dir) == before

    loaded = tinylm.load(dry)
    assert loaded.generate("ROMEO:", max_new_tokens=60, temperature=0.8, seed=7) == \
        tinylm.load(run_dir).generate("ROMEO:", max_new_tokens=60, temperature=0.8, seed=7)
    # The card's samples are what `tinylm sample` prints for the same settings.
    prompt = loaded.config.train.sample_prompt
    card_sample = tinylm.load(dry).generate(prompt, max_new_tokens=loaded.config.train.sample_tokens,
                                            temperature=0.8, seed=loaded.config.train.seed)
    assert f"**temperature 0.8**\n\n```text\n{card_sample}\n```" in (dry / "README.md").read_text()

    tinylm.push(run_dir, "alice/renamed", dry_run=dry)  # an earlier dry run is replaced
    assert 'tinylm.load("alice/renamed")' in (dry / "README.md").read_text()
    assert not [p for p in dry.parent.iterdir() if p.name.startswith(".dry")]  # no staging folders left


@pytest.mark.parametrize("where, message", [
    ("inside", "inside the run"),
    ("unrelated", "not empty and is not an earlier dry run"),
])
def test_dry_run_refuses_folders_it_must_not_replace(trained_run, tmp_path, where, message):
    target = trained_run.run_dir / "card" if where == "inside" else tmp_path / "notes"
    if where == "unrelated":
        target.mkdir()
        (target / "keep.txt").write_text("mine")
    before = fingerprint(trained_run.run_dir)
    with pytest.raises(tinylm.TinyLMError, match=message):
        tinylm.push(trained_run.run_dir, "alice/x", dry_run=target)
    assert fingerprint(trained_run.run_dir) == before
    assert where == "inside" or (target / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("case, message", [
    ("no token", "no Hugging Face token"),
    ("wrong token", "refused the token (HTTP 401)"),
    ("unreachable", "http://127.0.0.1:9 is unreachable"),
])
def test_push_errors_are_one_line_and_leave_the_run_untouched(trained_run, hub, tmp_path, case, message):
    changes = {"no token": {"HF_TOKEN": None}, "wrong token": {"HF_TOKEN": "hf_wrong"},
               "unreachable": {"HF_ENDPOINT": "http://127.0.0.1:9"}}[case]
    before = fingerprint(trained_run.run_dir)
    env = hub_env(hub, tmp_path / "hf", **changes)
    result = run_cli("push", trained_run.run_dir, "--repo", "alice/tiny", env=env)
    assert result.returncode == 2 and result.stdout == ""
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert fingerprint(trained_run.run_dir) == before
    assert not hub.repos.get("alice/tiny") or not hub.repos["alice/tiny"].commits


def test_loading_a_missing_repo_or_a_repo_without_a_run(hub, tmp_path):
    env = hub_env(hub, tmp_path / "hf")
    result = run_cli("sample", "alice/nope", env=env)
    assert result.returncode == 2
    assert "alice/nope is neither a local run directory nor a model repo" in result.stderr
    bert = {"config.json": b'{"model_type": "bert"}'}
    hub.repos["alice/other"] = Repo(private=False, commits=[("a" * 40, bert)])
    result = run_cli("sample", "alice/other", env=env)
    assert result.returncode == 2
    assert "alice/other is not a tinylm run: it has no tinylm/config.json" in result.stderr


def test_card_of_a_built_in_corpus_names_its_hub_dataset_and_language(trained_run, tmp_path):
    import shutil

    from tinylm.publishing.hub import model_card

    copy = tmp_path / "run"
    shutil.copytree(trained_run.run_dir, copy, ignore=shutil.ignore_patterns("checkpoint"))
    config = json.loads((copy / "config.json").read_text())
    config["data"]["source"] = "shakespeare"  # the card reads the config, never the corpus
    (copy / "config.json").write_text(json.dumps(config))
    meta, body = split_card(model_card(copy, "alice/x"))
    assert meta["datasets"] == ["karpathy/tiny_shakespeare"] and meta["language"] == ["en"]
    assert meta["model-index"][0]["results"][0]["dataset"]["type"] == "karpathy/tiny_shakespeare"
    assert "trained from scratch with tinylm on Tiny Shakespeare" in body
    assert "the last 10% of the text" in body


def test_bad_repo_id_is_a_user_error(trained_run):
    with pytest.raises(tinylm.TinyLMError, match="USER/NAME"):
        tinylm.push(trained_run.run_dir, "just-a-name", dry_run="unused")


# -- GPT runs: the transformers export at the root (the only weights), tinylm's other files in tinylm/ ---
@pytest.fixture(scope="module")
def gpt_run(tmp_path_factory, data_dir):
    pytest.importorskip("tinylm.publishing.export")
    if "gpt" not in tinylm.models.MODEL_NAMES:
        pytest.skip("the GPT family is not available")
    folder = tmp_path_factory.mktemp("gpt")
    (folder / "corpus.txt").write_text((data_dir / "tinyshakespeare/input.txt").read_text()[:20_000])
    config = tiny_config(folder / "corpus.txt", model="gpt", epochs=1)  # 1 layer x 16 wide, 4 heads, block 32
    return tinylm.train(config, out=folder / "run", progress=False, echo=lambda s: None)


# Two loads compared: their run folders, whether every tensor is equal (same dtype, same values), greedy text.
COMPARE = """
import json, sys, torch, tinylm
ours, theirs = tinylm.load(sys.argv[1]), tinylm.load(sys.argv[2])
a, b = ours.module.state_dict(), theirs.module.state_dict()
print(json.dumps({
    "run_dir": str(ours.run_dir),
    "same_weights": a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a),
    "greedy": [run.generate("ROMEO:", max_new_tokens=40, greedy=True) for run in (ours, theirs)],
}))
"""


def compare(first, second, env: dict[str, str]) -> dict:
    return json.loads(run_python(COMPARE, first, second, env=env))


def card_files(card: str) -> list[str]:
    """The file names the model card's Files section lists."""
    return re.findall(r"^- `([^`]+)`: ", card.split("## Files", 1)[1], re.MULTILINE)


def same_weights(first: tinylm.LoadedModel, second: tinylm.LoadedModel) -> bool:
    import torch

    a, b = first.module.state_dict(), second.module.state_dict()
    return a.keys() == b.keys() and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def shifted_gpt_run(run_dir: Path, out: Path) -> Path:
    """A copy of the GPT run `run_dir` whose learned positions are moved: other weights, same everything else."""
    import shutil

    from tinylm.models.weights import save_weights

    shutil.copytree(run_dir, out, ignore=shutil.ignore_patterns("checkpoint"))
    run = tinylm.load(out)
    run.module.transformer.wpe.weight.data.add_(0.25)
    save_weights(run.module, out / WEIGHTS)
    return out


def test_gpt_repo_holds_its_weights_once_and_tinylm_rebuilds_them(gpt_run, hub, tmp_path, monkeypatch):
    run_dir = gpt_run.run_dir
    cache = tmp_path / "tinylm-cache"
    env = hub_env(hub, tmp_path / "hf", TINYLM_CACHE_DIR=str(cache))
    result = run_cli("push", run_dir, "--repo", "alice/tiny-gpt", env=env)
    assert result.returncode == 0, result.stderr
    files = hub.files("alice/tiny-gpt")
    print("pushed GPT repo:", {name: len(data) for name, data in sorted(files.items())})
    assert json.loads(files["config.json"])["model_type"] == "gpt2"
    assert [name for name in files if name.endswith(WEIGHTS)] == [WEIGHTS]  # once: GPT-2's, at the root
    for name in PUSHED - {"README.md", "loss.png", WEIGHTS}:
        assert files[f"{RUN_SUBFOLDER}/{name}"] == (run_dir / name).read_bytes(), name
    meta, body = split_card(files["README.md"].decode())
    assert meta["library_name"] == "transformers" and "gpt" in meta["tags"]
    assert 'pipeline("text-generation", model="alice/tiny-gpt")' in body
    assert sorted(card_files(files["README.md"].decode())) == sorted(files)  # names only files that exist

    # tinylm.load("alice/tiny-gpt") rebuilds tinylm's weights from the root's, in tinylm's cache, keyed by
    # repo and commit: exactly the run's weights, so exactly its text.
    commit = hub.repos["alice/tiny-gpt"].commits[-1][0]
    rebuilt = cache / REBUILT_RUNS / "hub" / "alice--tiny-gpt" / commit
    loaded = compare("alice/tiny-gpt", run_dir, env)
    assert loaded["run_dir"] == str(rebuilt) and loaded["same_weights"]
    assert loaded["greedy"][0] == loaded["greedy"][1] and loaded["greedy"][0].startswith("ROMEO:")
    assert {p.name for p in rebuilt.iterdir()} == {name for name in PUSHED if (run_dir / name).is_file()} - {
        "README.md", "loss.png"}
    assert not [p for p in rebuilt.parent.iterdir() if p.name.startswith(".")]  # no staging folder left
    made = (rebuilt / WEIGHTS).stat().st_mtime_ns
    assert run_python(GENERATE, "alice/tiny-gpt", env=env) == run_python(GENERATE, run_dir, env=env)
    offline = hub_env(hub, tmp_path / "hf", TINYLM_CACHE_DIR=str(cache), HF_HUB_OFFLINE="1",
                      HF_ENDPOINT="http://127.0.0.1:9")
    assert run_python(GENERATE, "alice/tiny-gpt", env=offline) == run_python(GENERATE, run_dir, env=env)
    assert (rebuilt / WEIGHTS).stat().st_mtime_ns == made  # made once, then reused
    # Loaded by its path, the rebuilt run is still the Hub's: the local data its config names is not read.
    monkeypatch.setenv("TINYLM_CACHE_DIR", str(cache))
    assert "not read" in tinylm.load(rebuilt).data_refused

    # A new push is a new commit: rebuilt again, with the new weights.
    shifted = shifted_gpt_run(run_dir, tmp_path / "shifted")
    assert run_cli("push", shifted, "--repo", "alice/tiny-gpt", env=env).returncode == 0
    new_commit = hub.repos["alice/tiny-gpt"].commits[-1][0]
    assert new_commit != commit
    loaded = compare("alice/tiny-gpt", shifted, env)
    assert loaded["run_dir"] == str(rebuilt.parent / new_commit) and loaded["same_weights"]
    assert not compare("alice/tiny-gpt", run_dir, env)["same_weights"]


def test_gpt_dry_run_has_the_same_layout_and_loads_locally(gpt_run, tmp_path):
    transformers = pytest.importorskip("transformers")
    from tinylm.data.sources import cache_dir

    run_dir = gpt_run.run_dir
    dry = tmp_path / "dry"
    tinylm.push(run_dir, "alice/tiny-gpt", dry_run=dry)
    held = sorted(str(p.relative_to(dry)) for p in dry.rglob("*") if p.is_file())
    print("GPT dry run:", held)
    assert not (dry / RUN_SUBFOLDER / WEIGHTS).exists() and (dry / WEIGHTS).is_file()
    assert sorted(card_files((dry / "README.md").read_text())) == held

    loaded = tinylm.load(dry)
    assert (cache_dir() / REBUILT_RUNS / "local") in loaded.run_dir.parents  # rebuilt in tinylm's cache
    original = tinylm.load(run_dir)
    assert same_weights(loaded, original) and loaded.data_refused is None  # a local folder: a local run
    assert run_dir_of(dry) == loaded.run_dir == tinylm.load(dry / RUN_SUBFOLDER).run_dir  # the subfolder too
    # transformers reads the root: its greedy continuation is tinylm's (within the context).
    model = transformers.AutoModelForCausalLM.from_pretrained(dry)
    tokenizer = transformers.AutoTokenizer.from_pretrained(dry)
    ids = tokenizer("ROMEO:", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    greedy = loaded.generate("ROMEO:", max_new_tokens=12, greedy=True)
    assert tokenizer.decode(out[0], skip_special_tokens=True) == greedy == \
        original.generate("ROMEO:", max_new_tokens=12, greedy=True)

    # The same folder written again from other weights is rebuilt again (the key is the folder's content).
    tinylm.push(shifted_gpt_run(run_dir, tmp_path / "shifted"), "alice/tiny-gpt", dry_run=dry)
    again = tinylm.load(dry)
    assert again.run_dir != loaded.run_dir and same_weights(again, tinylm.load(tmp_path / "shifted"))
    # Damaged GPT-2 weights are a one-line error, not a traceback.
    (dry / WEIGHTS).write_bytes((dry / WEIGHTS).read_bytes()[:100])
    with pytest.raises(tinylm.TinyLMError, match="not a readable safetensors file"):
        tinylm.load(dry)


def test_gpt_repos_pushed_with_both_copies_still_load_from_tinylm_weights(gpt_run, hub, tmp_path):
    """Repos pushed before the weights were kept once hold tinylm/model.safetensors too: that copy is loaded
    (here the root's GPT-2 weights are another model's, so loading them would show)."""
    from safetensors.torch import save_file

    from tinylm.data.sources import cache_dir
    from tinylm.publishing.export import gpt2_state_dict

    run_dir = gpt_run.run_dir
    cache = tmp_path / "tinylm-cache"
    old = tmp_path / "old"
    tinylm.push(run_dir, "alice/old-gpt", dry_run=old)
    (old / RUN_SUBFOLDER / WEIGHTS).write_bytes((run_dir / WEIGHTS).read_bytes())
    other = tinylm.load(shifted_gpt_run(run_dir, tmp_path / "shifted"))
    save_file(gpt2_state_dict(other.module), str(old / WEIGHTS), metadata={"format": "pt"})
    hub.repos["alice/old-gpt"] = Repo(private=False, commits=[("c" * 40, folder_files(old))])

    env = hub_env(hub, tmp_path / "hf", TINYLM_CACHE_DIR=str(cache))
    loaded = compare("alice/old-gpt", run_dir, env)
    assert loaded["run_dir"].endswith(f"{'c' * 40}/{RUN_SUBFOLDER}") and loaded["same_weights"]
    assert loaded["greedy"][0] == loaded["greedy"][1]
    local = tinylm.load(old)
    assert local.run_dir == old / RUN_SUBFOLDER and same_weights(local, tinylm.load(run_dir))
    assert not (cache / REBUILT_RUNS).exists() and not (cache_dir() / REBUILT_RUNS).exists()  # nothing rebuilt


# -- fine-tunes: a transformers model folder at the root, with tinylm_config.json ------------------------
def test_a_finetune_is_pushed_as_a_transformers_repo_that_names_its_base(hub, tmp_path, data_dir):
    pytest.importorskip("transformers")
    from test_finetune import make_tiny_gpt2

    text = (data_dir / "tinyshakespeare/input.txt").read_text(encoding="utf-8")[:20_000]
    (tmp_path / "corpus.txt").write_text(text, encoding="utf-8")
    env = hub_env(hub, tmp_path / "hf")
    # The base comes from the (loopback) Hub, as `--base gpt2` would from huggingface.co.
    make_tiny_gpt2(tmp_path / "base", text)
    run_python("import sys; from huggingface_hub import HfApi; api = HfApi(); api.create_repo('alice/tiny-base'); "
               "api.upload_folder(repo_id='alice/tiny-base', folder_path=sys.argv[1])", tmp_path / "base", env=env)
    run_dir = tmp_path / "ft"
    result = run_cli("finetune", "--base", "alice/tiny-base", "--data", tmp_path / "corpus.txt", "--epochs", "1",
                     "--lr", "3e-3", "--batch-size", "16", "--block-size", "32", "--sample-tokens", "10",
                     "--quiet", "--out", run_dir, env=env)
    assert result.returncode == 0, result.stderr
    result = run_cli("push", run_dir, "--repo", "alice/tiny-ft", env=env)
    assert result.returncode == 0, result.stderr

    files = hub.files("alice/tiny-ft")
    assert set(files) == {"README.md"} | {p.name for p in run_dir.iterdir() if p.is_file()}
    assert {"config.json", "tinylm_config.json", "generation_config.json", "model.safetensors"} <= set(files)
    meta, body = split_card(files["README.md"].decode())
    assert meta["base_model"] == "alice/tiny-base" and meta["library_name"] == "transformers"
    assert meta["widget"] == [{"text": json.loads(files["tinylm_config.json"])["train"]["sample_prompt"]}]
    assert "fine-tuned from alice/tiny-base with tinylm on corpus.txt" in body and "from scratch" not in body
    assert "1 full epoch of 1 planned (all planned epochs done)" in body
    listed = re.findall(r"^- `([^`]+)`: ", body.split("## Files", 1)[1], re.MULTILINE)
    assert sorted(listed) == sorted(files)  # the card lists exactly the repo's files

    # transformers' pipeline loads the pushed repo (what the Hub's widget runs), and writes tinylm's text.
    code = ("import sys; from transformers import pipeline; g = pipeline('text-generation', model=sys.argv[1]); "
            "print(g('ROMEO:', max_new_tokens=12, do_sample=False)[0]['generated_text'], end='')")
    greedy = ("import sys, tinylm; print(tinylm.load(sys.argv[1]).generate('ROMEO:', max_new_tokens=12, "
              "greedy=True, stop_at_eos=False), end='')")
    assert run_python(code, "alice/tiny-ft", env=env) == run_python(greedy, "alice/tiny-ft", env=env) == \
        run_python(greedy, run_dir, env=env)


def test_a_budget_runs_card_names_no_planned_count():
    from tinylm.publishing.hub import _epochs_line

    metrics = [{"epoch": 1, "step": 10}, {"epoch": 2, "step": 15, "partial": True}]
    line = _epochs_line(metrics, {"stop_reason": "time_budget"}, None, 1)  # epochs left open: a budget decides
    assert line.startswith("1 full epoch + 1 cut short (time budget reached); best at epoch 1") and "?" not in line
    assert "of 5 planned" in _epochs_line(metrics[:1], {"stop_reason": "epochs"}, 5, 1)
