"""`tinylm project readme`: the final project's submission README, in the shape of the course's example (a summary,
the links, an architecture table, the training details, the validation-loss plot and a sample generation), every
value read from the run, none typed by hand.

RUN is a tinylm run directory, or a folder written by `tinylm.course.project.save` (its config.json names the
architecture and the training settings, history.json the losses).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TinyLMError
from ..io import read_jsonl, write_text
from ..run.layout import METRICS, is_run
from .submission import Folder, count_parameters, validation_losses

PLOT = "val_loss.png"


@dataclass
class Facts:
    """What the README says, gathered from a run or a project folder."""

    title: str
    kind: str  # "Decoder-only Transformer", "LSTM", ...
    data: str
    architecture: list[tuple[str, str]]  # (row, value), in the README's language
    training: list[tuple[str, str]]
    losses: list[float]
    sample: str | None
    prompt: str
    wandb_url: str | None = None
    wandb_offline: bool = False
    extra: dict = field(default_factory=dict)


WORDS = {
    "de": {"links": "Modell-Links", "hub": "Hugging Face Hub", "wandb": "Weights & Biases",
           "not_pushed": "noch nicht hochgeladen (`tinylm push RUN --repo NAME/REPO`)",
           "offline": "offline geloggt; hochladen mit `wandb sync {folder}`", "no_wandb": "kein W&B-Lauf",
           "architecture": "Architektur", "parameter": "Hyperparameter", "value": "Wert",
           "training": "Trainingsdetails", "plot": "Validierungs-Loss nach jeder Epoche",
           "example": "Beispiel – Textgenerierung", "prompt": "Prompt",
           "summary": "Ein kompaktes, autoregressives Sprachmodell ({kind}), trainiert auf {data} in {epochs} "
                      "Epochen{wandb}. Validierungs-Loss: {first} → {last}.",
           "with_wandb": " mit W&B-Logging", "type": "Typ", "layers": "Ebenen", "heads": "Heads",
           "embedding": "Embedding-Dim", "ff": "FF-Dim", "hidden": "Hidden-Dim", "parameters": "Parameter",
           "vocabulary": "Vokabular", "optimizer": "Optimizer & LR", "batch": "Batch-Größe", "epochs": "Epochen",
           "loss": "Loss-Funktion", "loss_value": "Cross-Entropy (Sprachmodellierung)",
           "val": "Validierungs-Loss", "context": "Kontext", "epoch": "Epoche"},
    "en": {"links": "Model links", "hub": "Hugging Face Hub", "wandb": "Weights & Biases",
           "not_pushed": "not uploaded yet (`tinylm push RUN --repo USER/NAME`)",
           "offline": "logged offline; upload with `wandb sync {folder}`", "no_wandb": "no W&B run",
           "architecture": "Architecture", "parameter": "Hyperparameter", "value": "Value",
           "training": "Training details", "plot": "Validation loss after each epoch",
           "example": "Example – text generation", "prompt": "Prompt",
           "summary": "A compact autoregressive language model ({kind}), trained on {data} for {epochs} "
                      "epochs{wandb}. Validation loss: {first} → {last}.",
           "with_wandb": " with W&B logging", "type": "Type", "layers": "Layers", "heads": "Heads",
           "embedding": "Embedding dim", "ff": "FF dim", "hidden": "Hidden dim", "parameters": "Parameters",
           "vocabulary": "Vocabulary", "optimizer": "Optimizer & LR", "batch": "Batch size", "epochs": "Epochs",
           "loss": "Loss function", "loss_value": "cross-entropy (language modelling)",
           "val": "Validation loss", "context": "Context", "epoch": "epoch"},
}


def _wandb(folder: Folder) -> tuple[str | None, bool, Path | None]:
    """(the W&B run's URL, whether it is offline, its folder) of the first W&B run in the folder."""
    from ..run.loggers import read_wandb_run

    for run_folder in folder.wandb_runs:
        run = read_wandb_run(run_folder)
        return run.url, run.offline, run_folder
    return None, False, None


def run_facts(root: Path, lang: str) -> Facts:
    """The facts of a tinylm run directory."""
    from ..publishing.hub import load

    w = WORDS[lang]
    run = load(root)
    config, model = run.config, run.config.model
    metrics = [r for r in read_jsonl(root / METRICS) if not r.get("partial")]
    tc, dc = config.train, config.data
    name = type(model).__name__
    if name == "GPTConfig":
        kind = "Decoder-only Transformer"
        rows = [(w["type"], kind), (w["layers"], str(model.layers)), (w["heads"], str(model.heads)),
                (w["embedding"], str(model.embed)), (w["ff"], str(4 * model.embed)),
                (w["context"], str(dc.block_size))]
    else:
        kind = run.module.tag().upper() if name == "RNNConfig" else run.module.describe()
        rows = [(w["type"], kind)] + ([(w["layers"], str(model.layers)), (w["embedding"], str(model.embed)),
                                       (w["hidden"], str(model.hidden))] if name == "RNNConfig" else [])
    rows += [(w["parameters"], f"{run.num_parameters():,}"),
             (w["vocabulary"], f"{run.tokenizer.vocab_size:,} ({run.tokenizer.kind})")]
    losses = [r["val_loss"] for r in metrics]
    training = [(w["optimizer"], f"**{tc.optimizer.replace('adamw', 'AdamW').replace('adam', 'Adam')}**, "
                                 f"{tc.lr:g}"), (w["batch"], str(tc.batch_size)), (w["epochs"], str(len(metrics))),
                (w["loss"], w["loss_value"]), (w["val"], " → ".join(f"{v:.3f}" for v in losses))]
    prompt = tc.sample_prompt or ""
    sample = run.generate(prompt, max_new_tokens=min(tc.sample_tokens, 300), temperature=0.8, seed=tc.seed)
    url, offline, _ = _wandb(Folder.find(root))
    return Facts(title=root.name, kind=kind, data=dc.source if ":" in dc.source or "/" not in dc.source
                 else Path(dc.source).name, architecture=rows, training=training, losses=losses, sample=sample,
                 prompt=prompt, wandb_url=url, wandb_offline=offline)


def project_facts(root: Path, lang: str) -> Facts:
    """The facts of a folder written by tinylm.course.project.save: config.json (the model's arguments and the
    training settings) and history.json."""
    w = WORDS[lang]
    folder = Folder.find(root)
    config = json.loads((root / "config.json").read_text(encoding="utf-8")) if (root / "config.json").is_file() \
        else {}
    model, train = config.get("model", {}), config.get("training", {})
    losses, _ = validation_losses(folder)
    rows = [(w["type"], config.get("type", "Decoder-only Transformer"))]
    for key, label in (("layers", "layers"), ("heads", "heads"), ("embed", "embedding"), ("ff", "ff"),
                       ("block_size", "context")):
        if key in model:
            rows.append((w[label], str(model[key])))
    if folder.weights is not None:
        rows.append((w["parameters"], f"{count_parameters(folder.weights):,}"))
    training = [(w["optimizer"], f"**{train.get('optimizer', '?')}**, {train.get('lr', '?')}"),
                (w["batch"], str(train.get("batch_size", "?"))), (w["epochs"], str(len(losses))),
                (w["loss"], w["loss_value"]), (w["val"], " → ".join(f"{v:.3f}" for v in losses))]
    url, offline, _ = _wandb(folder)
    return Facts(title=config.get("title", root.name), kind=rows[0][1], data=config.get("data", "?"),
                 architecture=rows, training=training, losses=losses, sample=config.get("sample"),
                 prompt=config.get("prompt", ""), wandb_url=url, wandb_offline=offline)


def submission_readme(path: str | Path, lang: str = "de", hub: str | None = None, wandb: str | None = None,
                      plot: str | None = PLOT) -> tuple[str, Facts]:
    """The README's text (Markdown) for the run or project folder `path`, and the facts it was made of."""
    if lang not in WORDS:
        raise TinyLMError(f"--lang must be de or en, got {lang!r}")
    root = Path(path)
    if not root.is_dir():
        raise TinyLMError(f"{root} is not a folder: give a tinylm run directory or a project folder")
    facts = run_facts(root, lang) if is_run(root) else project_facts(root, lang)
    if not facts.losses:
        raise TinyLMError(f"{root} holds no validation loss per epoch (metrics.jsonl, history.json or W&B): "
                          f"train it first")
    w = WORDS[lang]
    wandb_folder = _wandb(Folder.find(root))[2]
    wandb_link = wandb or facts.wandb_url or (w["offline"].format(folder=wandb_folder.relative_to(root).as_posix())
                                              if wandb_folder is not None else w["no_wandb"])
    summary = w["summary"].format(kind=facts.kind, data=facts.data, epochs=len(facts.losses),
                                  wandb=w["with_wandb"] if wandb_folder is not None or wandb else "",
                                  first=f"{facts.losses[0]:.3f}", last=f"{facts.losses[-1]:.3f}")
    lines = [f"# {facts.title}", "", summary, "", f"## {w['links']}",
             f"* **{w['hub']}**: " + (f"https://huggingface.co/{hub}" if hub else w["not_pushed"]),
             f"* **{w['wandb']}**: {wandb_link}", "", f"## {w['architecture']}",
             f"| {w['parameter']} | {w['value']} |", "|---|---|",
             *[f"| {row} | {value} |" for row, value in facts.architecture], "", f"## {w['training']}",
             *[f"* {row}: {value}" for row, value in facts.training], ""]
    if plot:
        lines += [f"![{w['plot']}]({plot})", ""]
    if facts.sample:
        fence = "````" if "```" in facts.sample else "```"
        lines += [f"## {w['example']}", "", f"{w['prompt']}: `{facts.prompt!r}`", "", f"{fence}text", facts.sample,
                  fence, ""]
    return "\n".join(lines), facts


def write_readme(path: str | Path, out: str | Path | None = None, *, lang: str = "de", hub: str | None = None,
                 wandb: str | None = None, overwrite: bool = False) -> Path:
    """Write the submission README of `path` to `out` (default PATH/README.md) and the validation-loss plot beside
    it; an existing README is replaced only with `overwrite`."""
    from ..folders import check_output_file
    from ..plots import plot_losses

    root = Path(path)
    out = Path(out) if out is not None else root / "README.md"
    if out.is_dir():
        raise TinyLMError(f"--out {out} is a folder; give the README's file name, e.g. {out / 'README.md'}")
    if out.exists() and not overwrite:
        raise TinyLMError(f"--out {out} exists; pass --overwrite to replace it")
    text, facts = submission_readme(root, lang, hub, wandb)
    plot = out.parent / PLOT
    check_output_file(plot)
    plot_losses(facts.losses, plot, title=WORDS[lang]["plot"], xlabel=WORDS[lang]["epoch"],
                ylabel=WORDS[lang]["val"])
    write_text(out, text)
    return out
