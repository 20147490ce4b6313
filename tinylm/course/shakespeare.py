"""Checks of the Shakespeare exercise (Aufgabe a-i, PyTorch Lightning): the vocabulary, the `CharDataset` (maxlen
40, step 3), the `LitCharRNN`, `tempered_softmax`, early stopping and the generation of text.

tinylm's own versions (what a check compares with, and what the notebook goes on with while a part is not done):
the windows are tinylm's many-to-one windows (`TokenWindows(target="last")`), the model is tinylm's `exercise`
recurrent model, the softmax `tinylm.tempered_softmax`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.windows import TokenWindows
from ..generation.sampling import tempered_softmax as tinylm_tempered_softmax
from .checking import Finding, NotDone, same, task

SAMPLE_TEXT = ("Sein oder Nichtsein, das ist hier die Frage: ob's edler im Gemüt, die Pfeil und Schleudern des "
               "wütenden Geschicks erdulden oder, sich waffnend gegen eine See von Plagen, durch Widerstand sie enden.")


def vocabulary(text: str) -> tuple[dict[str, int], dict[int, str]]:
    """(char2idx, idx2char) over the sorted characters of `text`: the exercise's encoding."""
    chars = sorted(set(text))
    return {c: i for i, c in enumerate(chars)}, dict(enumerate(chars))


@task("char_maps", "Aufgabe b – char2idx und idx2char",
      "baue aus sorted(set(text)) zwei dicts: Zeichen → Index und Index → Zeichen")
def _char_maps(value, text: str) -> Iterator[Finding]:
    char2idx, idx2char = value
    expected, _ = vocabulary(text)
    yield Finding(isinstance(char2idx, dict) and len(char2idx) == len(expected),
                  f"char2idx hat {len(char2idx) if isinstance(char2idx, dict) else '?'} Einträge "
                  f"(der Text hat {len(expected)} verschiedene Zeichen)", "jedes verschiedene Zeichen genau einmal")
    yield Finding(same(char2idx, expected), "char2idx ordnet die Zeichen sortiert den Zahlen 0, 1, 2, … zu",
                  "nimm sorted(set(text)) und enumerate")
    yield Finding(isinstance(idx2char, dict) and all(idx2char.get(i) == c for c, i in expected.items()),
                  "idx2char ist die Umkehrung von char2idx", "{i: c for c, i in char2idx.items()}")


class CharDataset(Dataset):
    """tinylm's version of the exercise's dataset: windows of `maxlen` characters every `step`, each labelled with
    the character after it (tinylm's many-to-one windows)."""

    def __init__(self, data_dir: str, maxlen: int = 40, step: int = 3):
        text = Path(data_dir).read_text(encoding="utf-8")
        self.char2idx, self.idx2char = vocabulary(text)
        ids = torch.tensor([self.char2idx[c] for c in text])
        self.windows = TokenWindows(ids, block_size=maxlen, stride=step, target="last")
        self.sequences = [text[s:s + maxlen] for s in self.windows.starts.tolist()]
        self.next_chars = [text[s + maxlen] for s in self.windows.starts.tolist()]

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        seq = self.sequences[idx]
        return (torch.tensor([self.char2idx[c] for c in seq], dtype=torch.long),
                torch.tensor(self.char2idx[self.next_chars[idx]], dtype=torch.long))


def _dataset_fallback(value, **context):
    return CharDataset


@task("char_dataset", "Aufgabe d – CharDataset",
      "lies den Text aus data_dir, baue char2idx, und sammle ab i = 0, step, 2·step, … die Zeichenketten "
      "text[i:i+maxlen] in self.sequences und das Zeichen text[i+maxlen] in self.next_chars",
      fallback=_dataset_fallback)
def _char_dataset(value, **context) -> Iterator[Finding]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "text.txt"
        path.write_text(SAMPLE_TEXT, encoding="utf-8")
        for maxlen, step in ((40, 3), (37, 5)):  # 197 - 37 is a multiple of 5: the last window counts
            got, expected = value(str(path), maxlen=maxlen, step=step), CharDataset(str(path), maxlen, step)
            yield from _compare_datasets(got, expected, maxlen, step)


def _compare_datasets(got, expected, maxlen: int, step: int) -> Iterator[Finding]:
    where = f"(maxlen {maxlen}, step {step}, ein Text von {len(SAMPLE_TEXT)} Zeichen)"
    yield Finding(len(got) == len(expected), f"{len(got)} Beispiele, erwartet {len(expected)} {where}",
                  "die Fenster beginnen bei 0, step, 2·step, … solange danach noch ein Zeichen folgt: "
                  "range(0, len(text) - maxlen, step)")
    if len(got) != len(expected) or not len(got):
        return
    for index in (0, len(expected) - 1):
        x, y = got[index]
        x_expected, y_expected = expected[index]
        yield Finding(torch.is_tensor(x) and x.dtype == torch.long and same(x.tolist(), x_expected.tolist()),
                      f"Beispiel {index}: die {maxlen} Eingabezeichen stimmen",
                      "x sind die Indizes von text[i:i+maxlen] als torch.long")
        yield Finding(torch.is_tensor(y) and y.dim() == 0 and int(y) == int(y_expected),
                      f"Beispiel {index}: das Zielzeichen stimmt (ein einzelner Index)",
                      "y ist der Index von text[i+maxlen], dem Zeichen nach dem Fenster")


def reference_lit_char_rnn():
    """tinylm's version of the exercise's LightningModule: tinylm's `exercise` model (embedding, LSTM, dropout,
    dense + ReLU, dropout, logits), read from the last position of each window."""
    import lightning.pytorch as pl
    import torch.nn.functional as F

    from ..models import build_model, model_config
    from ..training.presets import PRESETS

    class ReferenceLitCharRNN(pl.LightningModule):
        def __init__(self, vocab_size: int, embed_dim: int = 64, hidden_size: int = 128, dropout: float = 0.2,
                     lr: float = 5e-3):
            super().__init__()
            fixed = {k: v for k, v in PRESETS["exercise"]["model"].items() if k != "name"}
            self.model = build_model(model_config("lstm", **{**fixed, "vocab_size": vocab_size, "embed": embed_dim,
                                                             "hidden": hidden_size, "dropout": dropout}))
            self.lr = lr

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits, _ = self.model(x, None)
            return logits[:, -1]  # (B, V): the prediction after the whole window

        def training_step(self, batch, batch_index):
            x, y = batch
            loss = F.cross_entropy(self(x), y)
            self.log("train_loss", loss, prog_bar=True)
            return loss

        def validation_step(self, batch, batch_index):
            x, y = batch
            self.log("val_loss", F.cross_entropy(self(x), y), prog_bar=True)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=self.lr)

    return ReferenceLitCharRNN


@task("lit_char_rnn", "Aufgabe e – LitCharRNN",
      "Embedding(vocab_size, embed_dim) → LSTM(embed_dim, hidden_size, batch_first=True) → letzter Zustand → "
      "Dropout → Linear(hidden_size, hidden_size) + ReLU → Dropout → Linear(hidden_size, vocab_size); "
      "configure_optimizers gibt Adam mit lr zurück",
      fallback=lambda value, **context: reference_lit_char_rnn())
def _lit_char_rnn(value, **context) -> Iterator[Finding]:
    vocab_size = 30
    got, expected = value(vocab_size, 64, 128, 0.2, 5e-3), reference_lit_char_rnn()(vocab_size, 64, 128, 0.2, 5e-3)
    n_got = sum(p.numel() for p in got.parameters())
    n_expected = sum(p.numel() for p in expected.parameters())
    yield Finding(n_got == n_expected, f"{n_got:,} Parameter bei 30 Zeichen, erwartet {n_expected:,}",
                  "eine LSTM-Schicht, eine Zwischenschicht Linear(hidden_size, hidden_size), dann die Ausgabe")
    kinds = [type(m).__name__ for m in got.modules()]
    shown = [k for k in kinds if k in ("Embedding", "LSTM", "Dropout", "Linear", "ReLU")]
    yield Finding({"Embedding", "LSTM", "Dropout", "Linear"} <= set(kinds) and kinds.count("Linear") == 2,
                  f"Schichten: {', '.join(shown)}",
                  "nn.Embedding, nn.LSTM, nn.Dropout und zwei nn.Linear")
    dropouts = [m.p for m in got.modules() if isinstance(m, torch.nn.Dropout)]
    yield Finding(bool(dropouts) and all(p == 0.2 for p in dropouts), "Dropout mit p = 0.2",
                  "nn.Dropout(dropout) mit dem Argument des Konstruktors")
    got.eval()
    with torch.no_grad():
        out = got(torch.randint(0, vocab_size, (3, 40)))
    out = out[0] if isinstance(out, tuple) else out
    yield Finding(tuple(out.shape) == (3, vocab_size), f"Ausgabe für 3 Fenster à 40 Zeichen: {tuple(out.shape)}, "
                  f"erwartet (3, {vocab_size})", "gib nur die Logits nach dem letzten Zeichen zurück: output[:, -1]")
    optimizer = got.configure_optimizers()
    optimizer = optimizer[0] if isinstance(optimizer, (list, tuple)) else optimizer
    lr = optimizer.param_groups[0]["lr"] if hasattr(optimizer, "param_groups") else None
    yield Finding(isinstance(optimizer, torch.optim.Adam) and lr == 5e-3,
                  f"Optimizer {type(optimizer).__name__} mit lr {lr}",
                  "torch.optim.Adam(self.parameters(), lr=self.lr)")


@task("tempered_softmax", "Aufgabe f – tempered_softmax",
      "teile die Werte durch T, ziehe das Maximum ab (gegen Überlauf) und normiere exp(...) auf Summe 1",
      fallback=lambda value, **context: reference_tempered_softmax)
def _tempered_softmax(value, **context) -> Iterator[Finding]:
    rng = np.random.default_rng(0)
    preds = rng.normal(size=12) * 3
    for temperature in (0.5, 1.0, 2.0):
        got = np.asarray(value(preds.copy(), temperature), dtype=np.float64)
        expected = tinylm_tempered_softmax(torch.tensor(preds), temperature).double().numpy()
        yield Finding(got.shape == expected.shape and np.allclose(got, expected, atol=1e-5),
                      f"T = {temperature}: gleich wie tinylm.tempered_softmax", "softmax(preds / T)")
    got = np.asarray(value(preds.copy(), 1.0), dtype=np.float64)
    yield Finding(abs(got.sum() - 1) < 1e-6, f"die Wahrscheinlichkeiten summieren sich zu {got.sum():.6f}",
                  "teile durch die Summe")
    cold = np.asarray(value(preds.copy(), 0.01), dtype=np.float64)
    yield Finding(cold.argmax() == preds.argmax() and cold.max() > 0.999, "T → 0: fast alles auf dem größten Wert",
                  "kleine T schärfen die Verteilung")
    big = np.asarray(value(np.array([1000.0, 999.0, 0.0]), 1.0), dtype=np.float64)
    yield Finding(bool(np.isfinite(big).all()), "große Werte (1000) laufen nicht über",
                  "ziehe vor exp das Maximum ab: exp(z - max(z))")


def reference_tempered_softmax(preds, temperature: float) -> np.ndarray:
    """tinylm.tempered_softmax for NumPy values, as the exercise's function returns them."""
    values = torch.from_numpy(np.ascontiguousarray(preds, dtype=np.float64))
    return tinylm_tempered_softmax(values, temperature).double().numpy()


@task("early_stopping", "Aufgabe g – Early Stopping",
      "EarlyStopping(monitor=\"val_loss\", patience=5, mode=\"min\") aus lightning.pytorch.callbacks")
def _early_stopping(value, **context) -> Iterator[Finding]:
    from lightning.pytorch.callbacks import EarlyStopping

    callbacks = getattr(value, "callbacks", [value])
    early = next((c for c in callbacks if isinstance(c, EarlyStopping)), None)
    yield Finding(early is not None, "ein EarlyStopping-Callback", "übergib ihn dem Trainer: callbacks=[...]")
    if early is None:
        return
    yield Finding(early.monitor == "val_loss", f"beobachtet {early.monitor!r}", "monitor=\"val_loss\"")
    yield Finding(early.patience == 5, f"patience {early.patience}", "patience=5")
    yield Finding(early.mode == "min", f"mode {early.mode!r}", "ein Loss soll sinken: mode=\"min\"")


def reference_generate(char2idx: dict[str, int], maxlen: int = 40):
    """tinylm's version of the exercise's generation: the last `maxlen` characters in, the next one drawn from the
    tempered softmax of the model's logits, `length` times."""
    idx2char = {i: c for c, i in char2idx.items()}

    @torch.no_grad()
    def generate_text(model, seed_text: str, length: int = 200, temperature: float = 1.0) -> str:
        model.eval()
        text = seed_text
        for _ in range(length):
            window = [char2idx[c] for c in text[-maxlen:] if c in char2idx]
            logits = model(torch.tensor([window or [0]]))
            logits = logits[0] if isinstance(logits, tuple) else logits
            probs = tinylm_tempered_softmax(logits[0].float(), temperature)
            text += idx2char[int(torch.multinomial(probs, 1))]
        return text

    return generate_text


@task("generate_text", "Aufgabe h – Text generieren",
      "schiebe ein Fenster der letzten maxlen Zeichen weiter, ziehe jedes nächste Zeichen aus "
      "tempered_softmax(logits, T) (np.random.choice oder torch.multinomial) und hänge es an",
      fallback=lambda value, char2idx, **context: reference_generate(char2idx))
def _generate(value, model, char2idx: dict, seed_text: str = "ROMEO:", **context) -> Iterator[Finding]:
    if model is None:
        raise NotDone
    text = value(model, seed_text, 30, 1.0)
    yield Finding(isinstance(text, str), f"gibt Text zurück ({type(text).__name__})", "gib einen str zurück")
    if not isinstance(text, str):
        return
    yield Finding(text.startswith(seed_text), "der Text beginnt mit dem Anfangstext", "hänge an seed_text an")
    yield Finding(len(text) == len(seed_text) + 30, f"{len(text) - len(seed_text)} neue Zeichen, erwartet 30",
                  "eine Schleife über length Schritte, je ein Zeichen")
    yield Finding(set(text) <= set(char2idx), "nur Zeichen aus dem Vokabular", "wandle Indizes mit idx2char um")
    cold = len(set(value(model, seed_text, 60, 0.01)[len(seed_text):]))
    hot = len(set(value(model, seed_text, 60, 100.0)[len(seed_text):]))
    yield Finding(cold < hot, f"die Temperatur wirkt: bei T = 0.01 {cold} verschiedene Zeichen, bei T = 100 {hot}",
                  "teile die Logits vor der Softmax durch die Temperatur")
