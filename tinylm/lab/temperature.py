"""Sampling temperature, shown and measured.

- `plot_softmax`: the next-token distribution of a trained model (or of random logits) at several
  temperatures: softmax(logits / T) sharpens below 1 and flattens above.
- `temperature_report`: samples per temperature and prompt with measured text statistics: the share of
  generated words that are real words (found in the training text), distinct-1/2 (variety) and the
  repetition rate (loops), and the temperature from which words are no longer recognisable.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..errors import TinyLMError
from ..evaluation.memorisation import WORD, generated_words
from ..folders import OutputKind
from ..generation.sampling import tempered_softmax
from ..io import write_json, write_text
from ..loading import LoadedModel
from ..plots import plot_distributions, plot_temperature
from ..publishing.hub import load

SOFTMAX_TEMPERATURES = (0.2, 0.5, 1.0, 2.0, 5.0)
REPORT_TEMPERATURES = (0.3, 0.8, 1.0, 1.3, 1.8)
REPETITION_N = 3  # word n-grams met again in the same sample count as repeated text (low temperatures loop)


def parse_temperatures(text: str) -> list[float]:
    """'0.3,0.8,1' -> [0.3, 0.8, 1.0], sorted, each a finite number > 0."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise TinyLMError(f"--temperatures must be numbers separated by commas, got {text!r}") from None
    return check_temperatures(values)


def check_temperatures(values) -> list[float]:
    values = sorted({float(v) for v in values})
    if not values:
        raise TinyLMError("give at least one temperature")
    bad = [v for v in values if not (math.isfinite(v) and v > 0)]
    if bad:
        raise TinyLMError(f"temperatures must be finite numbers > 0, got {bad[0]:g}")
    return values


def _as_run(run: LoadedModel | str | Path) -> LoadedModel:
    return run if isinstance(run, LoadedModel) else load(run)


def _label(token: str) -> str:
    """A token as a tick label: whitespace made visible."""
    return {" ": "␣", "\n": "\\n", "\t": "\\t", "": "''"}.get(token, token.replace("\n", "\\n"))


def _entropy_bits(probs: torch.Tensor) -> float:
    probs = probs[probs > 0]
    return float(-(probs * probs.log2()).sum())


def plot_softmax(run: LoadedModel | str | Path | None = None, temperatures=SOFTMAX_TEMPERATURES,
                 prompt: str | None = None, out: str | Path = "softmax.png", top: int = 20,
                 seed: int = 0) -> Path:
    """Plot softmax(logits / T) for each temperature: a run's real next-token distribution after `prompt`
    (default: the run's sample prompt), or, without a run, `top` random logits drawn with `seed`."""
    from ..folders import check_output_file
    from ..run.layout import is_run_file

    temperatures = check_temperatures(temperatures)
    check_output_file(out, reserved=is_run_file)
    if top < 2:
        raise TinyLMError(f"--top must be at least 2, got {top}")
    if run is None:
        logits = torch.randn(top, generator=torch.Generator().manual_seed(seed)) * 2.0
        logits = logits.sort(descending=True).values
        labels = [f"#{i + 1}" for i in range(top)]
        title = f"softmax(logits / T) of {top} random logits (seed {seed})"
    else:
        run = _as_run(run)
        if prompt is None:
            prompt = run.config.train.sample_prompt or ""
        dist = run.next_token_distribution(prompt)  # at T = 1, most likely first
        # log p differs from the model's logits by a constant, so softmax(log p / T) = softmax(logits / T)
        logits = torch.tensor([p for _, p in dist]).log()
        labels = [_label(token) for token, _ in dist[:top]]
        title = f"next token after {prompt!r} ({run.run_dir.name if run.run_dir else 'model'})"
    probs = {t: tempered_softmax(logits, t) for t in temperatures}
    shown = {t: p[:top].tolist() for t, p in probs.items()}
    entropies = {t: _entropy_bits(p) for t, p in probs.items()}
    plot_distributions(labels, shown, entropies, out, title=title)
    return Path(out)


# -- text statistics ---------------------------------------------------------------------------------
def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def distinct(samples: list[list[str]], n: int) -> float | None:
    """Distinct-n: distinct word n-grams / all word n-grams, over all samples together."""
    grams = [g for words in samples for g in _ngrams(words, n)]
    return len(set(grams)) / len(grams) if grams else None


def repetition(samples: list[list[str]], n: int = REPETITION_N) -> float | None:
    """Share of word n-grams that already occurred earlier in the same sample."""
    total = sum(max(0, len(words) - n + 1) for words in samples)
    repeats = sum(len(grams) - len(set(grams)) for grams in (_ngrams(words, n) for words in samples))
    return repeats / total if total else None


def real_words(samples: list[list[str]], vocabulary: set[str]) -> float | None:
    """Share of the words found in `vocabulary` (lower-cased: 'The' and 'the' are the same word)."""
    words = [w for ws in samples for w in ws]
    return sum(w.lower() in vocabulary for w in words) / len(words) if words else None


@dataclass
class TextStats:
    label: str
    """The temperature, or 'validation text' for the reference row."""
    samples: int
    words: int
    real_words: float | None
    distinct_1: float | None
    distinct_2: float | None
    repetition: float | None


def text_stats(label: str, samples: list[list[str]], vocabulary: set[str]) -> TextStats:
    return TextStats(label, len(samples), sum(map(len, samples)), real_words(samples, vocabulary),
                     distinct(samples, 1), distinct(samples, 2), repetition(samples))


def unrecognisable_from(temperatures: list[float], shares: list[float | None],
                        threshold: float) -> float | None:
    """The temperature at which the share of real words first falls below `threshold`, interpolated
    linearly between the measured temperatures (the lowest one when it is already below; None if never)."""
    points = [(t, s) for t, s in zip(temperatures, shares) if s is not None]
    if points and points[0][1] < threshold:
        return points[0][0]
    for (t0, s0), (t1, s1) in itertools.pairwise(points):
        if s1 < threshold <= s0:
            return t0 + (s0 - threshold) / (s0 - s1) * (t1 - t0)
    return None


def _reference_pieces(text: str, count: int, chars: int) -> list[str]:
    """`count` pieces of `chars` characters spread evenly over `text`, each starting at a word."""
    pieces = []
    span = max(1, len(text) - chars)
    for i in range(count):
        start = i * span // count
        while start < len(text) and not text[start].isspace():  # start on a whole word
            start += 1
        pieces.append(text[start : start + chars])
    return pieces


# -- the report --------------------------------------------------------------------------------------
@dataclass
class TemperatureReport:
    run: str
    temperatures: list[float]
    prompts: list[str]
    stats: list[TextStats]
    reference: TextStats
    """The same statistics on pieces of the validation text as long as the samples."""
    threshold: float
    unrecognisable_from: float | None
    samples: list[dict]
    """{"temperature", "prompt", "seed", "text"} for every sample."""

    def to_dict(self) -> dict:
        return asdict(self)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _answer(report: TemperatureReport) -> str:
    t, threshold = report.unrecognisable_from, report.threshold
    if t is None:
        return (f"Words stay recognisable (at least {threshold:.0%} real words) up to the highest "
                f"temperature tried, T = {report.temperatures[-1]:g}.")
    if t == report.temperatures[0]:
        return (f"Fewer than {threshold:.0%} of the words are real words already at the lowest temperature, "
                f"T = {t:g}.")
    return (f"**Words are no longer recognisable from T ≈ {t:.2f}**: above it, fewer than "
            f"{threshold:.0%} of the generated words exist in the training text (interpolated between the "
            f"measured temperatures; the validation text itself scores {_pct(report.reference.real_words)}).")


def _markdown(report: TemperatureReport, description: str, max_new_tokens: int, samples: int) -> str:
    lines = [
        f"# Temperature report: {report.run}",
        "",
        (f"Model: {description}. {samples} samples of {max_new_tokens} tokens per temperature and prompt "
         f"(prompts: {', '.join(repr(p) for p in report.prompts)}); the same seeds at every temperature."),
        "",
        ("| temperature | samples | words | real words | distinct-1 | distinct-2 | "
         f"repetition ({REPETITION_N}-grams) |"),
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for s in [*report.stats, report.reference]:
        lines.append(f"| {s.label} | {s.samples} | {s.words} | {_pct(s.real_words)} | {_pct(s.distinct_1)} | "
                     f"{_pct(s.distinct_2)} | {_pct(s.repetition)} |")
    lines += [
        "",
        ("*real words*: share of generated words (a word cut by the end of a sample is not counted) found, "
         "ignoring case, in the training text; *distinct-n*: distinct word n-grams / all word n-grams of the "
         f"temperature's samples; *repetition*: share of word {REPETITION_N}-grams that already occurred "
         "earlier in the same sample. The last row measures pieces of the validation text of the samples' "
         "length."),
        "",
        _answer(report),
        "",
        "![word validity against temperature](temperature.png)",
        "",
        "## Samples",
    ]
    for t in report.temperatures:
        lines += ["", f"### T = {t:g}"]
        for prompt in report.prompts:
            first = next(s for s in report.samples if s["temperature"] == t and s["prompt"] == prompt)
            lines += ["", f"Prompt {prompt!r}, seed {first['seed']}:", "", "```text", first["text"], "```"]
    return "\n".join(lines) + "\n"


REPORT_FOLDER = OutputKind("a temperature report", lambda folder: (folder / "temperature.md").is_file(),
                           frozenset({"temperature.md", "temperature.png", "temperature.json"}))
"""A temperature report as an output folder (tinylm.folders): an earlier one is replaced, nothing else is."""


def temperature_report(run: LoadedModel | str | Path, temperatures=REPORT_TEMPERATURES,
                       prompts: list[str] | None = None, out: str | Path = "temperature-report", *,
                       samples: int = 4, max_new_tokens: int = 300, seed: int = 0, threshold: float = 0.5,
                       echo: Callable[[str], None] = print) -> TemperatureReport:
    """Sample `samples` texts per temperature and prompt, measure them, and write temperature.md,
    temperature.png and temperature.json to `out`."""
    from ..data import load_split

    temperatures = check_temperatures(temperatures)
    if samples < 1 or max_new_tokens < 1:
        raise TinyLMError("--samples and --max-new-tokens must be at least 1")
    if not 0 < threshold < 1:
        raise TinyLMError(f"--threshold must be between 0 and 1, got {threshold}")
    from ..folders import writing_output

    out = Path(out)
    REPORT_FOLDER.check(out, overwrite=True)  # before minutes of sampling
    run = _as_run(run)
    prompts = list(prompts) if prompts else [run.config.train.sample_prompt or ""]
    run.check_data()  # a run from the Hub never reads a local file its config names
    train_text, val_text = load_split(run.config.data)
    vocabulary = {w.lower() for w in WORD.findall(train_text)}
    name = run.run_dir.name if run.run_dir else "model"

    records, stats = [], []
    for t in temperatures:
        words = []
        for p, prompt in enumerate(prompts):
            for i in range(samples):
                sample_seed = seed + 1000 * p + i  # the same seeds at every temperature: paired samples
                text = run.generate(prompt, max_new_tokens=max_new_tokens, temperature=t, seed=sample_seed)
                records.append({"temperature": t, "prompt": prompt, "seed": sample_seed, "text": text})
                words.append(generated_words(text, prompt))
        stats.append(text_stats(f"{t:g}", words, vocabulary))
        echo(f"T = {t:g}: {_pct(stats[-1].real_words)} real words, distinct-2 {_pct(stats[-1].distinct_2)}, "
             f"repetition {_pct(stats[-1].repetition)}")
    mean_chars = round(sum(len(r["text"]) - len(r["prompt"]) for r in records) / len(records))
    pieces = _reference_pieces(val_text, len(prompts) * samples, max(mean_chars, 1))
    reference = text_stats("validation text", [generated_words(piece) for piece in pieces], vocabulary)
    crossing = unrecognisable_from(temperatures, [s.real_words for s in stats], threshold)
    report = TemperatureReport(name, temperatures, prompts, stats, reference, threshold, crossing, records)

    series = {"real words": [s.real_words for s in stats], "distinct-2": [s.distinct_2 for s in stats],
              f"repetition ({REPETITION_N}-grams)": [s.repetition for s in stats]}
    with writing_output(REPORT_FOLDER, out, overwrite=True) as staging:  # an earlier report is replaced whole
        plot_temperature(temperatures, series, staging / "temperature.png", reference=reference.real_words,
                         threshold=threshold, crossing=crossing,
                         title=f"{name}: text statistics against sampling temperature")
        write_json(staging / "temperature.json", report.to_dict())
        write_text(staging / "temperature.md", _markdown(report, run.module.describe(), max_new_tokens, samples))
    echo(_answer(report).replace("**", ""))
    echo(f"report: {out / 'temperature.md'}")
    return report
