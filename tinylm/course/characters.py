"""Checks of the first character-level LSTM (lesson 000): the vocabulary of "hallo pytorch", the input and target
sequences, `SimpleLSTMLanguageModel` (Embedding(10) -> LSTM(20) -> Linear), the training loop (Adam 0.01, 100
full-batch epochs) and the generation of 20 characters from "h"."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from .checking import Finding, NotDone, same, task

EMBEDDING_DIM, HIDDEN_DIM, EPOCHS = 10, 20, 100


@task("vocabulary", "Schritt 2 – Vokabular",
      "chars = sorted(set(text)); char2idx: Zeichen → Index, idx2char: Index → Zeichen")
def _vocabulary(value, text: str) -> Iterator[Finding]:
    chars, char2idx, idx2char = value
    expected = sorted(set(text))
    yield Finding(same(list(chars), expected), f"chars: {len(chars)} Zeichen, sortiert, jedes einmal",
                  "sorted(set(text)) gibt jedes Zeichen einmal, sortiert")
    yield Finding(same(char2idx, {c: i for i, c in enumerate(expected)}), "char2idx zählt die Zeichen ab 0 durch",
                  "{ch: idx for idx, ch in enumerate(chars)}")
    yield Finding(same(idx2char, dict(enumerate(expected))), "idx2char ist die Umkehrung",
                  "{idx: ch for idx, ch in enumerate(chars)}")


@task("sequences", "Schritt 2 – Eingabe und Ziel",
      "input_seq sind die Indizes ohne das letzte Zeichen, target_seq ohne das erste, je mit Batch-Dimension 1")
def _sequences(value, text: str, char2idx: dict) -> Iterator[Finding]:
    input_seq, target_seq = value
    ids = [char2idx[c] for c in text]
    shape = (1, len(text) - 1)
    for name, tensor, expected, hint in (
            ("input_seq", input_seq, ids[:-1], "alle Indizes außer dem letzten: text_indices[:-1]"),
            ("target_seq", target_seq, ids[1:], "um eins verschoben: text_indices[1:]")):
        got = tuple(tensor.shape) if torch.is_tensor(tensor) else "?"
        yield Finding(got == shape, f"{name} hat die Form {got}, erwartet {shape}",
                      "torch.tensor(...).unsqueeze(0) fügt die Batch-Dimension hinzu")
        yield Finding(torch.is_tensor(tensor) and same(tensor.flatten().tolist(), expected), f"{name}: {hint}", hint)


class SimpleLSTMLanguageModel(nn.Module):
    """tinylm's version of the lesson's model: Embedding -> LSTM -> Linear, returning (logits, hidden)."""

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_dim, batch_first=True)
        self.fc = nn.Linear(hidden_dim, vocab_size)

    def forward(self, x: torch.Tensor, hidden=None):
        output, hidden = self.lstm(self.embedding(x), hidden)
        return self.fc(output), hidden


@task("lstm_model", "Schritt 3 – SimpleLSTMLanguageModel",
      "nn.Embedding(vocab_size, embedding_dim) → nn.LSTM(embedding_dim, hidden_dim, batch_first=True) → "
      "nn.Linear(hidden_dim, vocab_size); forward gibt (logits, hidden) zurück",
      fallback=lambda value, **context: SimpleLSTMLanguageModel)
def _lstm_model(value, vocab_size: int) -> Iterator[Finding]:
    model = value(vocab_size, EMBEDDING_DIM, HIDDEN_DIM)
    expected = (vocab_size * EMBEDDING_DIM + 4 * HIDDEN_DIM * (EMBEDDING_DIM + HIDDEN_DIM) + 8 * HIDDEN_DIM
                + HIDDEN_DIM * vocab_size + vocab_size)
    got = sum(p.numel() for p in model.parameters())
    yield Finding(got == expected, f"{got:,} Parameter, erwartet {expected:,}",
                  "Embedding(vocab_size, 10), LSTM(10, 20), Linear(20, vocab_size)")
    lstm = next((m for m in model.modules() if isinstance(m, nn.LSTM)), None)
    yield Finding(lstm is not None and lstm.batch_first, "ein nn.LSTM mit batch_first=True",
                  "batch_first=True: Eingaben haben die Form (Batch, Länge, Merkmale)")
    out = model(torch.zeros(1, 5, dtype=torch.long))
    yield Finding(isinstance(out, tuple) and len(out) == 2, "forward gibt (logits, hidden) zurück",
                  "return logits, hidden")
    if isinstance(out, tuple) and len(out) == 2:
        yield Finding(tuple(out[0].shape) == (1, 5, vocab_size),
                      f"logits für 5 Zeichen: {tuple(out[0].shape)}, erwartet (1, 5, {vocab_size})",
                      "self.fc auf die Ausgabe des LSTM an jeder Position")


@task("training", "Schritt 4 – Trainingsloop",
      "100 Epochen: zero_grad, Vorwärtsdurchlauf, CrossEntropyLoss über logits.view(-1, vocab_size), backward, "
      "step; hänge loss.item() an losses an")
def _training(value) -> Iterator[Finding]:
    losses = list(value)
    if not losses:
        raise NotDone
    yield Finding(len(losses) == EPOCHS, f"{len(losses)} Verlustwerte, einer je Epoche (erwartet {EPOCHS})",
                  "losses.append(loss.item()) einmal je Epoche")
    yield Finding(losses[-1] < losses[0] / 4, f"der Loss fällt von {losses[0]:.3f} auf {losses[-1]:.3f}",
                  "ruft die Schleife optimizer.zero_grad(), loss.backward() und optimizer.step() auf?")


@task("generation", "Schritt 5 – Text generieren",
      "beginne mit 'h', gib dem Modell jeweils das letzte Zeichen und den hidden-Zustand, ziehe das nächste mit "
      "torch.multinomial(torch.softmax(...), 1)")
def _generation(value, model, char2idx: dict, start: str = "h", length: int = 20) -> Iterator[Finding]:
    text = value(model, start, length)
    yield Finding(isinstance(text, str) and text.startswith(start), "der Text beginnt mit dem Startzeichen",
                  "generated_text = start_char, dann anhängen")
    if isinstance(text, str):
        yield Finding(len(text) == len(start) + length, f"{len(text)} Zeichen, erwartet {len(start) + length}",
                      f"{length} Schritte, je ein neues Zeichen")
        yield Finding(set(text) <= set(char2idx), "nur Zeichen aus dem Vokabular", "idx2char[next_idx]")
