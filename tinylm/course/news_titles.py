"""Checks of the news-titles exercise in Keras 3 (lesson 002): the character vocabulary with `<eos>`, the batch
function (padding, one-hot input, targets shifted by one and closed by `<eos>`), the model (Masking, LSTM(128),
Dense with softmax), `generate` and `generate_soft`.

The vocabulary is numbered as Keras 2's `Tokenizer(char_level=True, lower=False)` numbered it (the lesson's
tokenizer, which Keras 3 no longer has): the most frequent character is 1, ties in order of first appearance,
0 is padding, and `<eos>` comes last. Keras is imported only by the checks that need it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

import numpy as np

from .checking import Finding, same, task

UNITS = 128
TEMPERATURES = (0.3, 0.8, 1.0, 1.3, 1.8)
PROMPTS = ("Today ", "On Sunday ", "Moscow, ", "President ", "Little red riding hood ")
EOS = "<eos>"


def char_index(titles: Sequence[str]) -> dict[str, int]:
    """{character: index} as Keras 2's character-level Tokenizer numbered them (1 = the most frequent; ties in
    order of first appearance), then `<eos>` after them."""
    counts = Counter("".join(titles))
    order = sorted(counts, key=lambda c: -counts[c])  # sorted() is stable: ties keep their first appearance
    index = {c: i + 1 for i, c in enumerate(order)}
    index[EOS] = len(index) + 1
    return index


def encode(titles: Sequence[str], index: dict[str, int]) -> list[list[int]]:
    return [[index[c] for c in title if c in index] for title in titles]


def title_batch(titles: Sequence[str], index: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) of a batch of titles, one-hot: each title padded at the front to the longest (Keras'
    `pad_sequences`), the targets the inputs shifted by one and closed by `<eos>`. Padding positions are vectors
    of zeros, which `Masking` skips (a one-hot of index 0 would not be skipped)."""
    vocab_size = len(index) + 1
    width = max(len(t) for t in titles)
    ids = np.zeros((len(titles), width), dtype=np.int64)
    for row, sequence in enumerate(encode(titles, index)):
        if sequence:
            ids[row, width - len(sequence):] = sequence
    targets = np.concatenate([ids[:, 1:], np.full((len(titles), 1), index[EOS])], axis=1)
    targets[ids == 0] = 0  # a padding position predicts nothing either
    eye = np.eye(vocab_size, dtype=np.float32)
    eye[0] = 0.0
    return eye[ids], eye[targets]


@task("char_index", "Vokabular mit <eos>",
      "zähle die Zeichen aller Titel (Counter), nummeriere sie nach Häufigkeit ab 1 und hänge '<eos>' als letzten "
      "Index an; vocab_size = eos_token + 1")
def _char_index(value, titles: Sequence[str]) -> Iterator[Finding]:
    expected = char_index(titles)
    yield Finding(isinstance(value, dict) and len(value) == len(expected),
                  f"{len(value)} Einträge, erwartet {len(expected)} ({len(expected) - 1} Zeichen und <eos>)",
                  "jedes Zeichen einmal, dazu '<eos>'")
    yield Finding(isinstance(value, dict) and value.get(EOS) == len(expected), "'<eos>' hat den letzten Index",
                  "eos_token = len(word_index) + 1")
    yield Finding(same(value, expected), "die Zeichen sind nach Häufigkeit nummeriert, das häufigste ist 1",
                  "sorted(counts, key=lambda c: -counts[c]) behält bei Gleichstand die Reihenfolge des Auftretens")


@task("title_batch", "Batches aus Titeln",
      "Indizes vorne mit 0 auffüllen (pad_sequences), one-hot kodieren, die Ziele um eins verschieben und mit "
      "<eos> abschließen; Füllpositionen als Nullvektoren",
      fallback=lambda value, index, **context: lambda titles: title_batch(titles, index))
def _title_batch(value, titles: Sequence[str], index: dict[str, int]) -> Iterator[Finding]:
    sample = list(titles[:3])
    got = value(sample)
    if not isinstance(got, tuple) or len(got) != 2:
        yield Finding(False, "gibt ein Paar (Eingaben, Ziele) zurück", "return x, y")
        return
    x, y = (np.asarray(a, dtype=np.float32) for a in got)
    x_expected, y_expected = title_batch(sample, index)
    yield Finding(x.shape == x_expected.shape, f"Eingaben der Form {x.shape}, erwartet {x_expected.shape}",
                  "(Titel, längster Titel, vocab_size)")
    yield Finding(y.shape == y_expected.shape, f"Ziele der Form {y.shape}, erwartet {y_expected.shape}",
                  "die Ziele haben dieselbe Form wie die Eingaben")
    if x.shape != x_expected.shape or y.shape != y_expected.shape:
        return
    real = x_expected.any(axis=-1)
    yield Finding(np.array_equal(x[real], x_expected[real]), "die Zeichen der Titel stehen richtig kodiert am Ende",
                  "pad_sequences füllt vorne auf (padding='pre')")
    yield Finding(np.array_equal(y[real], y_expected[real]), "jedes Ziel ist das nächste Zeichen, zuletzt <eos>",
                  "Ziele = Eingaben ab der zweiten Position, dann eine Spalte eos_token")
    yield Finding(not x[~real].any(), "Füllpositionen sind Nullvektoren (Masking überspringt sie)",
                  "one_hot(0) ist [1, 0, …]: setze die Zeilen der Füllpositionen auf 0")


@task("keras_model", "Das Keras-Modell",
      "keras.Sequential([keras.Input((None, vocab_size)), keras.layers.Masking(), keras.layers.LSTM(128, "
      "return_sequences=True), keras.layers.Dense(vocab_size, activation='softmax')])")
def _keras_model(value, vocab_size: int) -> Iterator[Finding]:
    import keras

    layers = [layer for layer in value.layers]
    kinds = [type(layer).__name__ for layer in layers]
    yield Finding(kinds == ["Masking", "LSTM", "Dense"], f"Schichten: {', '.join(kinds)}",
                  "Masking, LSTM, Dense in dieser Reihenfolge")
    lstm = next((layer for layer in layers if isinstance(layer, keras.layers.LSTM)), None)
    yield Finding(lstm is not None and lstm.units == UNITS and lstm.return_sequences,
                  "LSTM(128) mit return_sequences=True", "eine Ausgabe an jeder Position: return_sequences=True")
    dense = next((layer for layer in layers if isinstance(layer, keras.layers.Dense)), None)
    yield Finding(dense is not None and dense.units == vocab_size and dense.activation.__name__ == "softmax",
                  f"Dense({vocab_size}) mit softmax", "Dense(vocab_size, activation='softmax')")
    out = np.asarray(keras.ops.convert_to_numpy(value(np.zeros((2, 7, vocab_size), dtype=np.float32))))
    yield Finding(out.shape == (2, 7, vocab_size), f"Ausgabe für 2 Titel à 7 Zeichen: {out.shape}",
                  "eine Verteilung über das Vokabular an jeder Position")
    expected = 4 * UNITS * (vocab_size + UNITS + 1) + (UNITS + 1) * vocab_size
    yield Finding(value.count_params() == expected, f"{value.count_params():,} Parameter, erwartet {expected:,}",
                  "keine weiteren Schichten")


class FixedModel:
    """A stand-in for the trained model: the same next-character probabilities `probs` at every position (a torch
    tensor (batch, length, vocabulary), as a Keras model on the torch backend returns), so a generation function
    can be checked exactly, whatever the real model learned."""

    def __init__(self, probs: Sequence[float]):
        import torch

        self.probs = torch.tensor(probs, dtype=torch.float32)

    def __call__(self, x, *args, **kwargs):
        shape = tuple(x.shape)
        return self.probs.expand(shape[0], shape[1], len(self.probs)).clone()


def _fixed_probs(index: dict[str, int], favourite: str, padding: float = 0.0) -> list[float]:
    """Probabilities over the vocabulary: `favourite` the most likely (0.4), the padding index 0 `padding`, <eos>
    nothing (unless it is the favourite), the rest shared evenly."""
    vocab_size = len(index) + 1
    others = [i for i in range(1, vocab_size) if i not in (index[favourite], index[EOS])]
    probs = [0.0] * vocab_size
    for i in others:
        probs[i] = (1.0 - 0.4 - padding) / len(others)
    probs[0], probs[index[favourite]] = padding, 0.4
    return probs


def _prompts(index: dict[str, int], prompts: Sequence[str] = PROMPTS) -> list[str]:
    """The lesson's prompts whose characters the vocabulary has (a small set of titles lacks some), else one made
    of its first characters."""
    usable = [p for p in prompts if set(p) <= set(index)]
    return usable or ["".join(c for c in index if c != EOS)[:6]]


@task("generate", "generate (gierig)",
      "kodiere start, rufe das Modell mit den one-hot-Eingaben auf, nimm argmax der letzten Position, brich bei "
      "<eos> ab")
def _generate(value, index: dict[str, int], **context) -> Iterator[Finding]:
    favourite = next(c for c in index if c not in (EOS, " "))
    start = _prompts(index)[0]
    text = value(FixedModel(_fixed_probs(index, favourite)), size=20, start=start)
    yield Finding(isinstance(text, str) and text.startswith(start), f"der Text beginnt mit {start!r}",
                  "gib decode(chars) zurück, chars beginnt mit den Indizes von start")
    yield Finding(text == start + favourite * 20, f"bei festen Wahrscheinlichkeiten kommt 20-mal das "
                  f"wahrscheinlichste Zeichen ({text[len(start):len(start) + 10]!r}…)",
                  "nimm np.argmax der Ausgabe an der letzten Position, size Schritte")
    ended = value(FixedModel(_fixed_probs(index, EOS)), size=20, start=start)
    yield Finding(ended == start, "ist <eos> am wahrscheinlichsten, endet der Text sofort",
                  "bei <eos> abbrechen, statt es anzuhängen")


@task("generate_soft", "generate_soft (mit Temperatur)",
      "teile log(Wahrscheinlichkeiten) durch die Temperatur, normiere, ziehe mit np.random.multinomial; ziehe nie "
      "den Index 0 (Padding: er hat kein Zeichen)")
def _generate_soft(value, index: dict[str, int], **context) -> Iterator[Finding]:
    favourite = next(c for c in index if c not in (EOS, " "))
    padded = FixedModel(_fixed_probs(index, favourite, padding=0.3))
    prompts = _prompts(index)
    texts = [value(padded, size=40, start=prompt, temperature=1.8) for prompt in prompts]
    yield Finding(all(isinstance(t, str) and t.startswith(p) for t, p in zip(texts, prompts)),
                  f"bei T = 1.8 kommt für alle {len(prompts)} Anfänge Text zurück, auch wenn das Modell dem Padding "
                  "(Index 0) Wahrscheinlichkeit gibt (kein KeyError: 0)", "setze die Wahrscheinlichkeit des "
                  "Index 0 vor dem Ziehen auf 0 und normiere neu")
    start = prompts[0]
    cold = value(FixedModel(_fixed_probs(index, favourite)), size=30, start=start, temperature=0.05)
    yield Finding(cold == start + favourite * 30, "T = 0.05: (fast) immer das wahrscheinlichste Zeichen",
                  "kleine T schärfen die Verteilung: log(p) / T")
    warm = value(FixedModel(_fixed_probs(index, favourite)), size=300, start=start,
                 temperature=1.0)[len(start):]
    share = warm.count(favourite) / max(len(warm), 1)
    yield Finding(0.25 < share < 0.55, f"T = 1: das häufigste Zeichen in {share:.0%} der Fälle (erwartet um 40 %)",
                  "bei T = 1 zieht man aus der Verteilung des Modells selbst")
