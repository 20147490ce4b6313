"""Several models, one corpus: the same split, tokenizer, windows and training-time budget for each, then
one table (parameters, train time, tokens/s, validation loss, bits per character, perplexity, memorisation),
one plot and samples from one fixed prompt.

    tinylm.compare(["markov", "lstm", "gpt"], data="shakespeare", budget_seconds=120, out="compare")

Every model is an ordinary run (out/runs/NAME), so any of them can be loaded, sampled or resumed later.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..config import RunConfig, parse_seeds
from ..errors import TinyLMError
from ..evaluation.memorisation import MemorisationResult, TrainingWords, memorisation
from ..folders import OutputKind
from ..io import write_json, write_text
from ..loading import LoadedModel
from ..models import MODEL_NAMES, model_config
from ..plots import plot_compare
from ..run.layout import SUMMARY


@dataclass
class CompareRow:
    model: str
    description: str
    parameters: int
    """Trainable parameters (an n-gram model: its stored n-grams)."""
    train_seconds: float
    tokens_per_s: float
    """Training tokens processed per second of training."""
    val_loss: float
    """Best validation loss, nats per token, over the whole validation split."""
    bits_per_char: float
    perplexity: float
    longest_copy: int
    """Words in the longest span of a sample copied verbatim from the training text."""
    novel_4grams: float | None
    """Share of the samples' word 4-grams absent from the training text."""
    run_dir: str
    """The run of the median seed (the lower middle one for an even number of seeds)."""
    sample: str
    seeds: list[int] = field(default_factory=list)
    """The seeds the model was trained with; the figures above are medians over their runs."""
    val_losses: list[float] = field(default_factory=list)
    """Best validation loss of each seed's run, in the order of `seeds`."""
    val_loss_std: float | None = None
    """Standard deviation of `val_losses` (None for one seed)."""
    val_loss_worst: float | None = None
    run_seed: int | None = None
    """The seed of the run that `run_dir` and `sample` come from."""


COLUMNS = [("model", "model"), ("description", "description"), ("parameters", "parameters"),
           ("train_seconds", "train time (s)"), ("tokens_per_s", "tokens/s"), ("seeds", "seeds"),
           ("val_loss", "val loss"), ("val_loss_spread", "val loss over seeds"),
           ("bits_per_char", "bits/char"), ("perplexity", "perplexity"),
           ("longest_copy", "longest copy (words)"), ("novel_4grams", "novel 4-grams")]


def parse_models(models: str | list[str]) -> list[str]:
    names = [m.strip() for m in models.split(",")] if isinstance(models, str) else list(models)
    names = [n for n in names if n]
    if not names:
        raise TinyLMError("--models needs at least one model name")
    unknown = [n for n in names if n not in MODEL_NAMES]
    if unknown:
        raise TinyLMError(f"unknown model {unknown[0]!r}; choose among {', '.join(MODEL_NAMES)}")
    if len(set(names)) != len(names):
        raise TinyLMError(f"--models names a model twice: {','.join(names)}")
    return names


def _row(name: str, run: LoadedModel, mem: MemorisationResult, sample: str) -> CompareRow:
    metrics = run.metrics
    best = run.best_record()
    # the epochs' speeds weighted by their time (rounded to 0.01 s in metrics.jsonl: a fast count shows 0)
    weights = [r["epoch_seconds"] for r in metrics]
    weights = weights if any(weights) else [1] * len(metrics)
    tokens_per_s = sum(w * r["tokens_per_s"] for w, r in zip(weights, metrics)) / sum(weights)
    return CompareRow(
        model=name, description=run.module.describe(), parameters=run.num_parameters(),
        train_seconds=round(metrics[-1]["elapsed_seconds"], 2),
        tokens_per_s=round(tokens_per_s, 1),
        val_loss=best["val_loss"], bits_per_char=best["val_bits_per_char"], perplexity=best["val_perplexity"],
        longest_copy=mem.longest_copy, novel_4grams=mem.novel_ngrams.get(4), run_dir=str(run.run_dir),
        sample=sample, run_seed=run.config.train.seed,
    )


def _seeds_text(seeds: list[int]) -> str:
    """1337; 1-5; 1,7,42."""
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


def _spread_text(row: dict) -> str:
    """Best - worst (sd) of the seeds' validation losses; "-" for one seed."""
    losses = row["val_losses"]
    if len(losses) < 2:
        return "-"
    return f"{min(losses):.4f} - {max(losses):.4f} (sd {row['val_loss_std']:.4f})"


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "seeds":
        return _seeds_text(value)
    if key == "novel_4grams":
        return f"{value:.1%}"
    if key in ("parameters", "tokens_per_s"):
        return f"{value:,.0f}"
    if key in ("val_loss", "bits_per_char", "perplexity"):
        return f"{value:.4f}" if key != "perplexity" else f"{value:.2f}"
    return str(value)


def _markdown(rows: list[CompareRow], header: str, prompt: str, temperature: float) -> str:
    lines = [header, "", "| " + " | ".join(title for _, title in COLUMNS) + " |",
             "|" + " --- |" * len(COLUMNS)]
    for row in rows:
        values = asdict(row)
        values["val_loss_spread"] = _spread_text(values)
        lines.append("| " + " | ".join(_cell(key, values[key]) for key, _ in COLUMNS) + " |")
    lines += ["", "![validation bits per character](compare.png)", "",
              f"## Samples (prompt {prompt!r}, temperature {temperature:g}, seed 0)"]
    for row in rows:
        seed = f" (seed {row.run_seed}, the median run)" if len(row.seeds) > 1 else ""
        lines += ["", f"### {row.model}{seed}", "", "```text", row.sample, "```"]
    return "\n".join(lines) + "\n"


def _csv(rows: list[CompareRow]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([key for key, _ in COLUMNS] + ["run_dir"])
    for row in rows:
        values = asdict(row)
        values["seeds"], values["val_loss_spread"] = _seeds_text(row.seeds), _spread_text(values)
        writer.writerow([values[key] for key, _ in COLUMNS] + [row.run_dir])
    return buffer.getvalue()


def _over_seeds(runs: list[tuple[CompareRow, LoadedModel]], seeds: list[int]) -> tuple[CompareRow, LoadedModel]:
    """One row for a model trained once per seed: each figure the median over the seeds, the sample and the
    run directory those of the median seed's run (the lower middle one for an even count)."""
    rows = [row for row, _ in runs]
    losses = [row.val_loss for row in rows]
    middle = sorted(range(len(rows)), key=lambda i: losses[i])[(len(rows) - 1) // 2]

    def median(key: str):
        values = [getattr(row, key) for row in rows]
        return None if None in values else statistics.median(values)

    numeric = ("train_seconds", "tokens_per_s", "val_loss", "bits_per_char", "perplexity",
               "longest_copy", "novel_4grams")
    row = replace(rows[middle], **{key: median(key) for key in numeric}, seeds=list(seeds), val_losses=losses,
                  val_loss_worst=max(losses),
                  val_loss_std=statistics.stdev(losses) if len(losses) > 1 else None)
    return row, runs[middle][1]


def _run_config(base: RunConfig, name: str, seed: int, budget_seconds: float | None, prompt: str | None,
                model_settings: dict[str, Any] | None) -> RunConfig:
    """The run of model `name` with `seed`: the template's data, tokenizer and training, the comparison's budget."""
    return RunConfig(
        data=copy.deepcopy(base.data), tokenizer=copy.deepcopy(base.tokenizer),
        model=model_config(name, **(model_settings or {})),
        train=replace(base.train, time_budget=budget_seconds, seed=seed,
                      sample_prompt=prompt if prompt is not None else base.train.sample_prompt,
                      epochs=None if budget_seconds is not None else base.train.epochs),  # None: the budget decides
    )


def _seeds_sentence(seeds: list[int]) -> str:
    if len(seeds) > 1:
        return (f"Each model trained once per seed ({_seeds_text(seeds)}): every figure is the median over the "
                f"seeds, the next column their best - worst validation loss and standard deviation.")
    return f"Seed {seeds[0]}: another seed moves the validation loss; --seeds N gives the median over N seeds."


COMPARISON_FOLDER = OutputKind("a comparison", lambda folder: (folder / "compare.md").is_file()
                               or (folder / "runs").is_dir(),
                               frozenset({"compare.md", "compare.csv", "compare.json", "compare.png", "runs"}))
"""A comparison as an output folder (tinylm.folders): its runs are written one by one, each a run of its own,
so the folder is checked (not staged) and its report files replaced one by one."""


def compare(models: str | list[str], data: str | None = None, *, budget_seconds: float | None = 60.0,
            out: str | Path = "compare", config: RunConfig | None = None,
            model_settings: dict[str, Any] | None = None, prompt: str | None = None, samples: int = 3,
            max_new_tokens: int = 300, temperature: float = 0.8, seeds: int | str | list[int] | None = None,
            overwrite: bool = False, progress: bool = True,
            echo: Callable[[str], None] = print) -> list[CompareRow]:
    """Train each of `models` on the same data for the same training time and write compare.md, compare.csv,
    compare.json and compare.png to `out` (the runs themselves go to out/runs/NAME).

    `config` is the template of every run (data, tokenizer, training settings; its model is ignored),
    `data` replaces its source, and `model_settings` (e.g. {"hidden": 128, "order": 5}) sets the fields of
    each model's config that it has. Memorisation and the table's sample come from `samples` texts sampled
    from `prompt` (default: the start of the training text).

    `seeds` trains each model once per seed (a count from the template's seed, "1-5" or a list, as
    config.parse_seeds reads them; runs in out/runs/NAME-seedS): every figure of the table is then the median
    over the seeds, with each seed's validation loss, their spread and the worst beside it, so that a
    comparison of models is not a comparison of seeds."""
    from ..data import load_split
    from ..training import train

    names = parse_models(models)
    if budget_seconds is not None and not budget_seconds > 0:
        raise TinyLMError(f"--budget-seconds must be positive, got {budget_seconds}")
    if samples < 1 or max_new_tokens < 1:
        raise TinyLMError("--samples and --max-new-tokens must be at least 1")
    if not (math.isfinite(temperature) and temperature > 0):  # checked before hours of training, not after
        raise TinyLMError(f"--temperature must be a finite number > 0, got {temperature}")
    base = copy.deepcopy(config) if config is not None else RunConfig()
    seed_list = [base.train.seed] if seeds is None else parse_seeds(seeds, start=base.train.seed)
    if data is not None:
        base.data.source = data
    train_text, _ = load_split(base.data)  # a bad --data fails here, before any training
    training_words = TrainingWords(train_text)
    out = Path(out)
    COMPARISON_FOLDER.check(out, overwrite=True)  # never `.`, a parent, a mount point, a folder of other files

    rows: list[CompareRow] = []
    ranges: list[tuple[float, float]] = []  # bits per character, best and worst seed
    curves: dict[str, list[tuple[float, float]]] = {}
    counted = set()
    for name in names:
        runs = []
        for seed in seed_list:
            echo(f"== {name} ==" if len(seed_list) == 1 else f"== {name}, seed {seed} ==")
            folder = out / "runs" / (name if len(seed_list) == 1 else f"{name}-seed{seed}")
            run = train(_run_config(base, name, seed, budget_seconds, prompt, model_settings), folder,
                        overwrite=overwrite, progress=progress, echo=echo)
            prompt = run.config.train.sample_prompt  # fixed by the first run when not given: the same for all
            texts = [run.generate(prompt, max_new_tokens=max_new_tokens, temperature=temperature, seed=i)
                     for i in range(samples)]
            runs.append((_row(name, run, memorisation(texts, training_words, prompt), texts[0]), run))
        row, median_run = _over_seeds(runs, seed_list)
        rows.append(row)
        ranges.append((min(r.bits_per_char for r, _ in runs), max(r.bits_per_char for r, _ in runs)))
        curves[name] = [(r["elapsed_seconds"], r["val_bits_per_char"]) for r in median_run.metrics]
        if not median_run.module.trainable:
            counted.add(name)

    budget = (f"{budget_seconds:g} s of training each" if budget_seconds is not None
              else f"{base.train.epochs} epochs each")
    hardware = json.loads((run.run_dir / SUMMARY).read_text(encoding="utf-8"))["hardware"]
    header = (f"# Model comparison on {base.data.source}\n\nSame split, {base.tokenizer.kind} tokenizer, "
              f"windows of {base.data.block_size} tokens, {budget} on {hardware}; validation figures over "
              f"the whole validation split (best evaluation). Memorisation over {samples} samples of "
              f"{max_new_tokens} tokens. {_seeds_sentence(seed_list)}")
    write_text(out / "compare.md", _markdown(rows, header, prompt, temperature))
    write_text(out / "compare.csv", _csv(rows))
    write_json(out / "compare.json", [asdict(r) for r in rows])
    plot_compare([r.model for r in rows], [r.bits_per_char for r in rows], curves, out / "compare.png",
                 counted=counted, title=f"{', '.join(names)} on {base.data.source} ({budget})",
                 ranges=ranges if len(seed_list) > 1 else None)
    echo(f"report: {out / 'compare.md'}")
    return rows
