"""`tinylm project check` and `tinylm project readme`: the course's final project, checked as a teacher checks it,
on (a) a tinylm final-project run, (b) a student's own folder (their model class in model.py, their loop in
train.py run as they would run it, a W&B offline run, a tokenizer folder), (c) three broken submissions; and the
README written from a run. The Hub is the stand-in on 127.0.0.1 (tests/hub_server.py); every command runs as a
user runs it, in its own process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hub_server import HubServer
from test_hub import TOKEN, hub_env, run_cli, split_card

import tinylm
from tinylm.course.submission import check_submission, trainer_uses

pytest.importorskip("transformers")
pytest.importorskip("wandb")

MODEL = '''
import torch
import torch.nn as nn


class DecoderOnlyLM(nn.Module):
    """Token and position embeddings, Transformer blocks with a causal mask, a head on the vocabulary."""

    def __init__(self, vocab_size, block_size, embed=32, heads=2, layers=2):
        super().__init__()
        self.block_size = block_size
        self.tokens = nn.Embedding(vocab_size, embed)
        self.positions = nn.Embedding(block_size, embed)
        layer = nn.TransformerEncoderLayer(embed, heads, 2 * embed, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(embed, vocab_size)

    def forward(self, ids):
        length = ids.size(1)
        x = self.tokens(ids) + self.positions(torch.arange(length))
        mask = nn.Transformer.generate_square_subsequent_mask(length)
        return self.head(self.blocks(x, mask=mask, is_causal=True))
'''

TRAIN = '''
# The student's own loop. A comment that names the Trainer (we do not use the Trainer) does not count.
import json
import os

import torch
import torch.nn.functional as F
import wandb
from safetensors.torch import save_file

from model import DecoderOnlyLM
from tinylm.course import project

text = open("text.txt", encoding="utf-8").read()
cut = int(len(text) * 0.9)
tokenizer = project.make_tokenizer(text[:cut], "tokenizer", vocab_size=300)
train_ids, val_ids = project.encode(tokenizer, text[:cut]), project.encode(tokenizer, text[cut:])
args = {"vocab_size": len(tokenizer), "block_size": 32, "embed": int(os.environ.get("EMBED", 32))}
torch.manual_seed(0)
model = DecoderOnlyLM(**args)
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
run = wandb.init(project="abschluss", dir=".", mode="offline")
history = []
for epoch in range(1, 4):
    model.train()
    for x, y in project.batches(train_ids, 32, 16, seed=epoch):
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        wandb.log({"train/loss": loss.item()})
    val_loss = project.evaluate(model, val_ids, 32)
    wandb.log({"epoch": epoch, "eval/loss": val_loss})
    history.append({"epoch": epoch, "train_loss": loss.item(), "val_loss": val_loss})
run.finish()
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, "model.safetensors")
json.dump({"model": args}, open("config.json", "w"))
json.dump(history, open("history.json", "w"))
'''

RISING = '''
import wandb
run = wandb.init(project="abschluss", dir=".", mode="offline")
for epoch, loss in enumerate([4.1, 4.3, 4.6], 1):
    wandb.log({"train/loss": 5.0 - epoch * 0.1})
    wandb.log({"epoch": epoch, "eval/loss": loss})
run.finish()
'''


def user_env(tmp_path: Path, hub: HubServer | None = None) -> dict[str, str]:
    """A student's or teacher's shell: W&B offline into the working folder, the Hub stand-in when given."""
    env = hub_env(hub, tmp_path / "hf-home") if hub else dict(os.environ)
    # WANDB_SERVICE: this test process's own W&B service, which a child would join (writing its run relative to
    # this process's folder, not the student's)
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DIR="", WANDB_SERVICE="", PYTHONPATH=str(Path.cwd()))
    for name in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        env[name] = str(tmp_path / name)
    return {k: v for k, v in env.items() if v != ""}


def project_cli(*args, env) -> tuple[int, str, str]:
    result = run_cli("project", *args, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout, result.stderr


def lines(stdout: str) -> dict[str, str]:
    """{requirement: its line} of a report (the name before the colon)."""
    return {line[2:].split(":")[0]: line for line in stdout.splitlines() if line[:1] in "✓✗?"}


@pytest.fixture(scope="module")
def hub():
    with HubServer(token=TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, data_dir) -> Path:
    path = tmp_path_factory.mktemp("project") / "text.txt"
    path.write_text((data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:24_000],
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def final_run(tmp_path_factory, corpus, hub) -> Path:
    """(a) a tinylm GPT under 1M parameters, 3 epochs, logged to W&B offline, pushed with a description and
    tags."""
    root = tmp_path_factory.mktemp("final")
    env = user_env(root, hub)
    result = subprocess.run([sys.executable, "-m", "tinylm", "train", "--data", str(corpus), "--model", "gpt",
                             "--embed", "32", "--layers", "2", "--heads", "2", "--block-size", "32",
                             "--tokenizer", "bpe", "--vocab-size", "300", "--epochs", "3", "--batch-size", "16",
                             "--lr", "3e-3", "--logger", "wandb", "--precision", "fp32", "--out",
                             str(root / "run"), "--quiet", "--sample-tokens", "20", "--sample-prompt", "ROMEO:"],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    pushed = run_cli("push", root / "run", "--repo", "alice/tiny-gpt", "--description",
                     "Ein kleines GPT aus dem Abschlussprojekt.", "--tags", "shakespeare,kursprojekt", env=env)
    assert pushed.returncode == 0, pushed.stderr
    return root / "run"


@pytest.fixture(scope="module")
def student(tmp_path_factory, corpus, hub) -> Path:
    """(b) a student's own folder: model.py, train.py run in the folder, README.md linking the Hub repo, and
    the folder pushed with the course helper."""
    folder = tmp_path_factory.mktemp("student") / "abgabe"
    folder.mkdir()
    (folder / "model.py").write_text(MODEL, encoding="utf-8")
    (folder / "train.py").write_text(TRAIN, encoding="utf-8")
    shutil.copy(corpus, folder / "text.txt")
    env = user_env(folder.parent, hub)
    result = subprocess.run([sys.executable, "train.py"], cwd=folder, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    (folder / "README.md").write_text("# Mein GPT\n\nAuf dem Hub: https://huggingface.co/bob/mein-gpt\n",
                                      encoding="utf-8")
    card = ("---\ntags:\n- kursprojekt\n---\n\n# Mein GPT\n\n"
            "Ein Decoder-only-Modell, selbst trainiert auf Shakespeare.\n")
    push = ("import sys; from pathlib import Path; from tinylm.course import project; "
            "card = Path(sys.argv[1], 'card'); card.mkdir(); (card / 'README.md').write_text(sys.argv[2]); "
            "print(project.push(card, 'bob/mein-gpt'))")
    result = subprocess.run([sys.executable, "-c", push, str(folder.parent), card], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and "bob/mein-gpt" in result.stdout, result.stderr
    return folder


# -- (a) and (b): every requirement holds -------------------------------------------------------------------------
def test_a_tinylm_final_project_run_meets_every_requirement(final_run, hub, tmp_path):
    code, out, err = project_cli("check", final_run, "--hub", "alice/tiny-gpt", env=user_env(tmp_path, hub))
    assert code == 0, out + err
    found = lines(out)
    assert len(found) == 7 and all(line.startswith("✓") for line in found.values()), out
    assert "later tokens leave earlier logits unchanged" in found["decoder-only and causal"]
    assert "train/loss, val/loss" in found["W&B with train and eval loss"]
    assert "shakespeare" in found["Hub repo with a model card"]


def test_a_students_own_folder_meets_every_requirement_in_german(student, hub, tmp_path):
    code, out, err = project_cli("check", student, "--model-class", "model:DecoderOnlyLM", "--lang", "de",
                                 env=user_env(tmp_path, hub))
    assert code == 0, out + err
    found = lines(out)
    assert len(found) == 8 and all(line.startswith("✓") for line in found.values()), out
    assert "W&B" in found["≥ 3 Epochen, Validierungs-Loss sinkt"]  # read from the W&B run's history
    assert "bob/mein-gpt" in found["Hub-Repo mit Model Card"]  # the repo linked in the README
    assert "kein Trainer" in found["eigener Trainingsloop (kein Trainer)"]


def test_json_for_a_teachers_script(student, tmp_path):
    code, out, _ = project_cli("check", student, "--json", env=user_env(tmp_path))  # no Hub: that one is '?'
    report = json.loads(out)
    assert code == 1 and report["passed"] is False and report["kind"] == "submission"
    status = {r["id"]: r["status"] for r in report["requirements"]}
    assert status["hub"] == "fail" and status["model"] == "unknown"  # the link points to an unreachable Hub
    assert {k for k, v in status.items() if v == "ok"} == {"parameters", "tokenizer", "epochs", "own_loop",
                                                         "wandb", "files"}


# -- (c) broken submissions ------------------------------------------------------------------------------------
def test_too_many_parameters(student, tmp_path):
    broken = tmp_path / "zu-gross"
    shutil.copytree(student, broken)
    import torch
    from safetensors.torch import save_file

    sys.path.insert(0, str(broken))
    try:
        from model import DecoderOnlyLM
    finally:
        sys.path.remove(str(broken))
    big = DecoderOnlyLM(vocab_size=300, block_size=32, embed=212, heads=2, layers=3)  # about 1.2M
    save_file({k: v.contiguous() for k, v in big.state_dict().items()}, str(broken / "model.safetensors"))
    (broken / "config.json").write_text(json.dumps({"model": {"vocab_size": 300, "block_size": 32, "embed": 212}}))
    torch.manual_seed(0)
    report = check_submission(broken, lang="en")
    [params] = [r for r in report.requirements if r.id == "parameters"]
    assert params.status == "fail" and params.message.startswith("1,2") and "model.safetensors" in params.message
    print(params.line("en"))


def test_a_trainer_import_is_found_in_the_code_not_in_comments(student, tmp_path):
    broken = tmp_path / "mit-trainer"
    shutil.copytree(student, broken)
    source = (broken / "train.py").read_text()
    (broken / "train.py").write_text(source.replace("import wandb\n", "import wandb\nfrom transformers import "
                                                                      "Trainer, TrainingArguments\n"))
    (broken / "bonus_gpt2.py").write_text("from transformers import Trainer\n")  # the bonus may use it
    report = check_submission(broken, lang="de")
    [loop] = [r for r in report.requirements if r.id == "own_loop"]
    assert loop.status == "fail" and "train.py:" in loop.message and "import Trainer" in loop.message
    assert "bonus" not in loop.message.split("(")[0]
    print(loop.line("de"))
    assert trainer_uses("# Trainer(model)\nx = 'Trainer'\n") == []
    assert [w for _, w in trainer_uses("import lightning.pytorch as pl\npl.Trainer(max_epochs=1)\n")] == \
        ["pl.Trainer"]
    assert [w for _, w in trainer_uses("import transformers as t\nt.Trainer(model=m)\n")] == ["t.Trainer"]


def test_a_rising_validation_loss(student, tmp_path):
    broken = tmp_path / "steigt"
    shutil.copytree(student, broken, ignore=shutil.ignore_patterns("wandb"))
    (broken / "history.json").unlink()
    result = subprocess.run([sys.executable, "-c", RISING], cwd=broken, env=user_env(tmp_path),
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = check_submission(broken, lang="en")
    [epochs] = [r for r in report.requirements if r.id == "epochs"]
    assert epochs.status == "fail" and "4.100 → 4.300 → 4.600" in epochs.message and "W&B" in epochs.message
    print(epochs.line("en"))


def test_a_partial_or_damaged_folder_gets_lines_never_a_traceback(tmp_path):
    folder = tmp_path / "kaputt"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    (folder / "notebook.ipynb").write_text("{not json")
    (folder / "tokenizer.json").write_text("[]")
    (folder / "wandb" / "offline-run-1").mkdir(parents=True)
    (folder / "wandb" / "offline-run-1" / "run-1.wandb").write_bytes(b"garbage")
    report = check_submission(folder, lang="en")
    assert not report.passed and len(report.requirements) == 8
    assert {r.id: r.status for r in report.requirements}["parameters"] == "fail"
    with pytest.raises(tinylm.TinyLMError):
        check_submission(tmp_path / "nope")


# -- the README -------------------------------------------------------------------------------------------------
def test_the_readme_of_a_run_holds_its_own_values(final_run, tmp_path):
    run = tinylm.load(final_run)
    code, out, err = project_cli("readme", final_run, "--lang", "de", "--hub", "alice/tiny-gpt", "--out",
                                 tmp_path / "README.md", env=user_env(tmp_path))
    assert code == 0, err
    readme = (tmp_path / "README.md").read_text(encoding="utf-8")
    metrics = run.metrics
    assert "https://huggingface.co/alice/tiny-gpt" in readme and "wandb sync" in readme
    assert "| Ebenen | 2 |" in readme and "| Heads | 2 |" in readme and "| Embedding-Dim | 32 |" in readme
    assert "| FF-Dim | 128 |" in readme and f"| Parameter | {run.num_parameters():,} |" in readme
    assert "**AdamW**, 0.003" in readme and "Batch-Größe: 16" in readme and "Epochen: 3" in readme
    assert " → ".join(f"{r['val_loss']:.3f}" for r in metrics) in readme
    assert "![Validierungs-Loss nach jeder Epoche](val_loss.png)" in readme and (tmp_path / "val_loss.png").is_file()
    sample = run.generate("ROMEO:", max_new_tokens=20, temperature=0.8, seed=run.config.train.seed)
    assert sample in readme
    code, _, err = project_cli("readme", final_run, "--out", tmp_path / "README.md", env=user_env(tmp_path))
    assert code == 2 and "--overwrite" in err  # an existing README is not replaced silently


def test_the_card_of_a_pushed_run_has_its_description_tags_and_wandb_line(final_run, hub):
    meta, body = split_card(hub.files("alice/tiny-gpt")["README.md"].decode())
    assert {"shakespeare", "kursprojekt", "tinylm"} <= set(meta["tags"])
    assert body.lstrip().startswith("# tiny-gpt\n\nEin kleines GPT aus dem Abschlussprojekt.")
    assert "| W&B run | logged offline, not synced" in body
