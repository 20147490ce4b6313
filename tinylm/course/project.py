"""The final project (lesson 001) around the student's own code: the student writes a decoder-only model from
`torch.nn` and the training loop; tinylm reads the data, makes a `transformers` tokenizer small enough for a model
under a million parameters, scores the validation text, and writes the model card and the folder to upload.

    train_text, val_text = project.load_text("shakespeare")
    tokenizer = project.make_tokenizer(train_text, "runs/projekt/tokenizer")    # loads with AutoTokenizer
    train_ids, val_ids = project.encode(tokenizer, train_text), project.encode(tokenizer, val_text)
    for x, y in project.batches(train_ids, block_size=64, batch_size=32, seed=epoch): ...   # the student's loop
    val_loss = project.evaluate(model, val_ids, block_size=64)                   # every token once, as tinylm does
    folder = project.save(model, tokenizer, "runs/projekt/abgabe", history, description=..., tags=[...])
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from ..data import load_split
from ..data.windows import TokenWindows
from ..evaluation.scoring import token_losses
from ..io import write_json, write_text
from ..models.weights import save_tensors
from .checking import Finding, NotDone, task

MAX_PARAMETERS = 1_000_000
MIN_EPOCHS = 3


def load_text(source: str = "shakespeare", val_fraction: float = 0.1) -> tuple[str, str]:
    """(training text, validation text) of a tinylm data source (a built-in corpus, a file, gutenberg:ID)."""
    from ..config import DataConfig

    return load_split(DataConfig(source=source, val_fraction=val_fraction))


def make_tokenizer(train_text: str, folder: str | Path, vocab_size: int = 1024):
    """A `transformers` tokenizer of `vocab_size` tokens for the text, saved in `folder` and loaded back with
    `AutoTokenizer` (what the project asks for). GPT-2's own has 50,257 tokens: its embedding alone would pass a
    million parameters at width 20. Where GPT-2's tokenizer is in the Hugging Face cache (or online), it is
    retrained on the text (`train_new_from_iterator`, the same byte-level scheme); offline without it, tinylm
    trains the same kind of byte-level BPE. Either way the result is GPT-2-style and says which it is."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    folder = Path(folder)
    pieces = [train_text[i:i + 100_000] for i in range(0, len(train_text), 100_000)]
    try:
        base = AutoTokenizer.from_pretrained("gpt2")
        tokenizer, made = base.train_new_from_iterator(pieces, vocab_size), "GPT-2s Tokenizer, neu trainiert"
    except (OSError, ValueError):
        from ..tokenizers import TokenizerConfig, build_bpe_from_iterator

        backend = build_bpe_from_iterator(TokenizerConfig(kind="bpe", vocab_size=vocab_size), pieces).backend
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", unk_token="<unk>",
                                            pad_token="<pad>")
        made = "byte-level BPE wie GPT-2 (GPT-2s Tokenizer ist offline nicht da)"
    tokenizer.save_pretrained(folder)
    loaded = AutoTokenizer.from_pretrained(folder)
    print(f"Tokenizer: {made}, {len(loaded):,} Tokens, gespeichert in {folder}")
    return loaded


def encode(tokenizer, text: str) -> torch.Tensor:
    """The token ids of `text` as one long tensor."""
    return torch.tensor(tokenizer(text)["input_ids"], dtype=torch.long)


def batches(ids: torch.Tensor, block_size: int, batch_size: int, seed: int = 0) -> Iterator[tuple[torch.Tensor,
                                                                                                   torch.Tensor]]:
    """Shuffled (inputs, targets) batches of windows of `block_size` tokens, the targets shifted by one (tinylm's
    windows; the order depends only on `seed`)."""
    return TokenWindows(ids, block_size, block_size).epoch(batch_size, seed=seed)


class _Contract(nn.Module):
    """The student's model behind tinylm's `logits, state = model(ids, state)`."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, ids, state=None):
        out = self.module(ids)
        return (out[0] if isinstance(out, tuple) else out), None


def evaluate(model: nn.Module, val_ids: torch.Tensor, block_size: int, batch_size: int = 64) -> float:
    """Mean cross-entropy over the validation ids, each token scored once (windows of `block_size`)."""
    windows = TokenWindows(val_ids, block_size, block_size)
    device = next(model.parameters()).device
    nats, count = token_losses(_Contract(model), windows.epoch(batch_size, seed=0), device)
    return nats / max(count, 1)


# -- checks ------------------------------------------------------------------------------------------------
@task("decoder_model", "Das Decoder-only-Modell",
      "baue das Modell aus torch.nn (z. B. nn.Embedding, nn.TransformerEncoderLayer mit causaler Maske oder "
      "eigene Blöcke, nn.Linear); forward(ids) gibt Logits der Form (Batch, Länge, vocab_size) zurück")
def _decoder_model(value: nn.Module, vocab_size: int, block_size: int) -> Iterator[Finding]:
    yield from decoder_findings(value, vocab_size, block_size)


def decoder_findings(model: nn.Module, vocab_size: int, block_size: int) -> Iterator[Finding]:
    """What the project asks of the model: built from torch.nn, fewer than a million parameters, logits at every
    position, causal (a later token never changes an earlier position's logits)."""
    foreign = sorted({type(m).__module__ for m in model.modules()
                      if type(m).__module__.split(".")[0] in ("transformers", "tinylm")})
    yield Finding(not foreign, "aus torch.nn gebaut" + (f" (nicht: {', '.join(foreign)})" if foreign else ""),
                  "nimm die Bausteine aus torch.nn, kein fertiges Modell aus transformers")
    count = sum(p.numel() for p in model.parameters())
    yield Finding(count < MAX_PARAMETERS, f"{count:,} Parameter (Grenze: unter {MAX_PARAMETERS:,})",
                  "kleineres embed oder weniger Schichten; das Embedding allein hat vocab_size × Breite Parameter")
    was_training = model.training
    model.eval()
    try:
        length = min(block_size, 16)
        ids = torch.randint(0, vocab_size, (2, length))
        with torch.no_grad():
            logits = _Contract(model)(ids)[0]
            changed = ids.clone()
            changed[:, length // 2:] = torch.randint(0, vocab_size, (2, length - length // 2))
            later = _Contract(model)(changed)[0]
    finally:
        model.train(was_training)
    yield Finding(tuple(logits.shape) == (2, length, vocab_size),
                  f"Logits für 2 × {length} Tokens: {tuple(logits.shape)}, erwartet (2, {length}, {vocab_size})",
                  "an jeder Position eine Vorhersage über das ganze Vokabular")
    if tuple(logits.shape) == (2, length, vocab_size):
        half = length // 2
        causal = torch.allclose(logits[:, :half], later[:, :half], atol=1e-5)
        yield Finding(causal, "kausal: spätere Tokens ändern die Vorhersagen früherer Positionen nicht",
                      "eine kausale Maske (nn.Transformer.generate_square_subsequent_mask) in der Attention")


@task("training_history", "Der eigene Trainingsloop",
      "sammle nach jeder Epoche {'epoch': …, 'train_loss': …, 'val_loss': …} in history; mindestens 3 Epochen")
def _training_history(value: Sequence[dict]) -> Iterator[Finding]:
    if not value:
        raise NotDone
    yield from history_findings(list(value))


def history_findings(history: list[dict]) -> Iterator[Finding]:
    epochs = len(history)
    yield Finding(epochs >= MIN_EPOCHS, f"{epochs} Epochen (mindestens {MIN_EPOCHS}, empfohlen 5)",
                  "trainiere länger: num_epochs = 5")
    losses = [record.get("val_loss") for record in history]
    yield Finding(all(isinstance(v, (int, float)) for v in losses) and len(losses) == epochs,
                  "nach jeder Epoche ein Validierungs-Loss", "history.append({... 'val_loss': val_loss})")
    if epochs >= 2 and all(isinstance(v, (int, float)) for v in losses):
        yield Finding(losses[-1] < losses[0], "der Validierungs-Loss sinkt: "
                      + " → ".join(f"{v:.3f}" for v in losses), "eine kleinere Lernrate oder mehr Epochen")


# -- the folder to upload ---------------------------------------------------------------------------------
CARDS = {
    "de": """---
{header}---

# {title}

{description}

Ein Decoder-only-Sprachmodell, selbst aus `torch.nn` gebaut und mit einem eigenen Trainingsloop trainiert, als
Abschlussprojekt eines Kurses über generative Sprachmodelle; der Tokenizer stammt aus `transformers`
(`AutoTokenizer`).

| | |
| --- | --- |
| Parameter | {parameters:,} |
| Vokabular | {vocab_size:,} Tokens |
| Epochen | {epochs} |
| Validierungs-Loss je Epoche | {losses} |
| W&B-Lauf | {wandb} |
""",
    "en": """---
{header}---

# {title}

{description}

A decoder-only language model written from `torch.nn` and trained with its own training loop, the final project of
a course on generative language models; the tokenizer is a `transformers` tokenizer (`AutoTokenizer`).

| | |
| --- | --- |
| parameters | {parameters:,} |
| vocabulary | {vocab_size:,} tokens |
| epochs | {epochs} |
| validation loss per epoch | {losses} |
| W&B run | {wandb} |
""",
}
OFFLINE_WANDB = {"de": "offline geloggt (hochladen mit `wandb sync`)",
                 "en": "logged offline (upload with `wandb sync`)"}


def save(model: nn.Module, tokenizer, out: str | Path, history: Sequence[dict], *, description: str,
         tags: Sequence[str], title: str = "Decoder-only-Sprachmodell", wandb_url: str | None = None,
         lang: str = "de", text_language: str = "en", config: dict | None = None) -> Path:
    """The folder to upload to the Hub: model.safetensors (the state dict), the tokenizer files, history.json,
    config.json (`config`: the model's constructor arguments under "model", the training settings under
    "training", and "data", "prompt", "sample": what `tinylm project readme` and `project check --model-class`
    read) and README.md, the model card (in German or English, `lang`) with the description and tags (its YAML
    header as the Hub reads it; `text_language`: the language the model writes)."""
    from huggingface_hub import ModelCardData

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_tensors({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                 out / "model.safetensors", metadata={"format": "pt"})
    tokenizer.save_pretrained(out)
    write_json(out / "history.json", list(history))
    write_json(out / "config.json", {"title": title, "type": "Decoder-only Transformer", **(config or {})})
    header = ModelCardData(language=text_language, license="mit", tags=list(tags), pipeline_tag="text-generation",
                           library_name="pytorch").to_yaml()
    losses = " → ".join(f"{r['val_loss']:.3f}" for r in history) or "–"
    write_text(out / "README.md", CARDS[lang].format(
        header=header + "\n", title=title, description=description.strip(),
        parameters=sum(p.numel() for p in model.parameters()), vocab_size=len(tokenizer), epochs=len(history),
        losses=losses, wandb=wandb_url or OFFLINE_WANDB[lang]))
    return out


def push(folder: str | Path, repo_id: str | None = None, token: str | None = None) -> str:
    """Upload `folder` as the model repo `repo_id` and return its URL; without a repo id (or a token) nothing is
    uploaded and the folder's path is returned, with a line saying how to upload it."""
    import huggingface_hub

    folder = Path(folder)
    token = token or huggingface_hub.get_token()
    if not repo_id or not token:
        print(f"nicht hochgeladen (kein Repo oder kein Token): der Ordner {folder} ist bereit; hochladen mit "
              f"huggingface_hub.upload_folder(folder_path=..., repo_id='NAME/REPO') nach `hf auth login`")
        return str(folder)
    api = huggingface_hub.HfApi(token=token)
    url = api.create_repo(repo_id, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message="Final project model")
    return str(url)


def read_history(folder: str | Path) -> list[dict]:
    return json.loads((Path(folder) / "history.json").read_text(encoding="utf-8"))
