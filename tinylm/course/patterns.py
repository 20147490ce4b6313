"""Checks of the lesson on RNN patterns and soft generation (lesson 003): one-to-one, one-to-many, many-to-one and
many-to-many on small tensors with one shared LSTM, and sampling the next token at a temperature."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from ..generation.sampling import tempered_softmax
from .checking import Finding, task

INPUT, HIDDEN, BATCH, STEPS = 4, 3, 2, 5


def small_models(seed: int = 0) -> tuple[nn.Linear, nn.LSTM]:
    """The layers the patterns are built from: a Linear(4, 3) and an LSTM(4, 3, batch_first=True)."""
    torch.manual_seed(seed)
    return nn.Linear(INPUT, HIDDEN), nn.LSTM(INPUT, HIDDEN, batch_first=True)


def reference_patterns(linear: nn.Linear, lstm: nn.LSTM, x: torch.Tensor, steps: int) -> dict[str, torch.Tensor]:
    """The four patterns on a batch `x` (B, T, 4): one-to-one (the first position through the Linear), one-to-many
    (the first position once, then zeros for `steps` - 1 more steps), many-to-one (the last output) and
    many-to-many (every output)."""
    outputs, _ = lstm(x)
    first = x[:, :1]
    rest = torch.zeros(x.size(0), steps - 1, x.size(2))
    generated, _ = lstm(torch.cat([first, rest], dim=1))
    return {"one_to_one": linear(x[:, 0]), "one_to_many": generated, "many_to_one": outputs[:, -1],
            "many_to_many": outputs}


PATTERN_HINTS = {
    "one_to_one": "eine Eingabe, eine Ausgabe: linear(x[:, 0]) – gar keine Folge",
    "one_to_many": "die erste Eingabe, danach Nullvektoren: torch.cat([x[:, :1], torch.zeros(...)], dim=1) durch "
                   "das LSTM",
    "many_to_one": "die ganze Folge durch das LSTM, nur die letzte Ausgabe: outputs[:, -1]",
    "many_to_many": "die ganze Folge durch das LSTM, jede Ausgabe: outputs",
}


@task("rnn_patterns", "Die vier RNN-Muster",
      "schreibe die vier Funktionen one_to_one, one_to_many, many_to_one und many_to_many mit den gegebenen "
      "Schichten linear und lstm")
def _rnn_patterns(value, **context) -> Iterator[Finding]:
    functions = dict(value)
    linear, lstm = small_models()
    x = torch.randn(BATCH, STEPS, INPUT)
    expected = reference_patterns(linear, lstm, x, steps=4)
    for name, want in expected.items():
        function = functions.get(name)
        if function is None:
            yield Finding(False, f"{name} fehlt", PATTERN_HINTS[name])
            continue
        with torch.no_grad():
            got = function(linear, lstm, x, 4) if name == "one_to_many" else function(linear, lstm, x)
        yield Finding(torch.is_tensor(got) and got.shape == want.shape and torch.allclose(got, want, atol=1e-6),
                      f"{name}: Form {tuple(got.shape) if torch.is_tensor(got) else '?'}, erwartet "
                      f"{tuple(want.shape)}", PATTERN_HINTS[name])


@task("sample_next", "Weiches Generieren: das nächste Token ziehen",
      "p = softmax(logits / T), dann torch.multinomial(p, 1, generator=generator)")
def _sample_next(value, **context) -> Iterator[Finding]:
    logits = torch.tensor([2.0, 1.0, 0.5, -1.0])
    generator = torch.Generator().manual_seed(0)
    cold = {int(value(logits, 0.05, generator)) for _ in range(50)}
    yield Finding(cold == {0}, "T = 0.05: immer das wahrscheinlichste Token", "kleine T schärfen die Verteilung")
    for temperature in (1.0, 2.0):
        draws = torch.tensor([int(value(logits, temperature, generator)) for _ in range(4000)])
        seen = torch.bincount(draws, minlength=4).double() / len(draws)
        expected = tempered_softmax(logits, temperature).double()
        yield Finding(bool((seen - expected).abs().max() < 0.03),
                      f"T = {temperature}: gezogen {[round(v, 2) for v in seen.tolist()]}, erwartet "
                      f"{[round(v, 2) for v in expected.tolist()]}", "ziehe aus softmax(logits / T), nicht argmax")
