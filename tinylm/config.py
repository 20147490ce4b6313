"""Run configuration: small typed dataclasses, saved as config.json in every run directory.

A RunConfig holds everything needed to rebuild a run: where the text came from and how it was cut
(DataConfig), the tokenizer (TokenizerConfig), the model (its family's config) and the optimisation
(TrainConfig). It round-trips through JSON exactly, so `tinylm.load(run_dir)` and `--resume` need
nothing else.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ._version import __version__
from .data.sources import check_val_fraction, is_line_corpus
from .errors import TinyLMError, check_choices, check_types, fits_type, type_name
from .io import write_json
from .models import config_from_dict, config_to_dict, model_config
from .models.base import SIZE_LIMITS
from .run import migrations
from .run.layout import CONFIG, run_config_file
from .tokenizers import TokenizerConfig

FORMAT_VERSION = migrations.CURRENT[migrations.CONFIG_JSON]  # config.json's format (see tinylm/run/migrations.py)

MAX_SEED = 2**32 - 1  # the epochs' batch orders derive from the seed (seed x 1,000,003 + epoch fits 64 bits)
MAX_SEEDS = 100  # runs one --seeds may ask for


def parse_seeds(text: str | int | list[int], start: int = 1337) -> list[int]:
    """The seeds of `--seeds`: "N" is N seeds counted from `start`, "A-B" the seeds A to B, "A,B,C" (or a
    list) those three. A figure of this field is a median over seeds; these are the runs it is taken over."""
    spec = ",".join(map(str, text)) if isinstance(text, (list, tuple)) else str(text).strip()
    try:
        if spec.isascii() and spec.isdigit():
            count = int(spec)
            seeds = list(range(start, start + count)) if 0 < count <= MAX_SEEDS else []
        elif "-" in spec and "," not in spec:
            low, high = (int(part) for part in spec.split("-"))
            seeds = list(range(low, high + 1)) if high - low < MAX_SEEDS else []
        else:
            seeds = [int(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(seeds) > MAX_SEEDS or len(set(seeds)) != len(seeds) \
            or not all(0 <= s <= MAX_SEED for s in seeds):
        raise TinyLMError(f"--seeds takes a count (5), a range (1-5) or a list (1,7,42) of up to {MAX_SEEDS} "
                          f"different seeds from 0 to {MAX_SEED}, got {str(text)!r}")
    return seeds


@dataclass
class DataConfig:
    """Where the text comes from and how it is cut into training examples."""

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {"target": ("every", "last")}

    source: str = "shakespeare"
    """A file, a folder of .txt files, a built-in corpus (shakespeare, wikitext2, NAME:SPLIT) or hf:NAME."""
    val_source: str | None = None
    """Validation text from another source instead of the tail of `source`."""
    val_fraction: float = 0.1
    """Share of the text (its end) used for validation when the source has no validation split."""
    encoding: str = "utf-8"
    """Encoding of text files."""
    text_column: str = "text"
    """Column of a Hugging Face dataset that holds the text."""
    hf_split: str = "train"
    """Split of a Hugging Face dataset."""
    hf_config: str | None = None
    """Configuration name of a Hugging Face dataset."""
    strip_gutenberg: bool = False
    """Cut the Project Gutenberg licence header and footer off a text file (gutenberg:ID sources always are)."""
    lines: bool | None = None
    """One sample per line: each line ends with <eos>, batches are padded, lines are never cut. Left out: on for
    the corpora of one sample per line (agnews), off for the others."""
    target: str = "every"
    """every: predict the next token at every position; last: many-to-one (only the token after the window)."""
    block_size: int = 128
    """Tokens per training window (the exercise's maxlen for target=last)."""
    stride: int | None = None
    """Tokens between window starts (the exercise's step); default: block_size for every, 3 for last."""

    def __post_init__(self) -> None:
        check_types(self)
        check_choices(self)
        if self.lines is None:
            self.lines = is_line_corpus(self.source)
        if self.lines and self.target == "last":
            raise TinyLMError("--target last predicts the token after a window of running text; --lines trains "
                              "on whole lines, every token a target: use one or the other")
        if self.stride is None:
            self.stride = self.block_size if self.target == "every" else 3
        if self.block_size < 1 or self.stride < 1:
            raise TinyLMError("--block-size and --stride must be at least 1")
        check_val_fraction(self.val_fraction)  # the split's own rule (data/sources.py)


LOGGER_NAMES = ("none", "csv", "tensorboard", "wandb")
"""The experiment trackers (tinylm.run.loggers.LOGGERS has one class for each)."""
MAX_LR = 1000.0  # far past any useful rate; beyond ~1e38 the optimizer's arithmetic overflows float32


def check_learning_rate(value: float, flag: str = "--lr") -> None:
    """Refuse a learning rate that is not a number above 0 and up to MAX_LR (NaN and infinity included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_LR:
        raise TinyLMError(f"{flag} must be a positive, finite number up to {MAX_LR:g}, got {value!r}")


@dataclass
class TrainConfig:
    """Optimisation, evaluation and checkpointing."""

    CHOICES: ClassVar[dict[str, tuple[str, ...]]] = {
        "optimizer": ("adam", "adamw", "muon"), "lr_schedule": ("constant", "cosine", "linear"),
        "logger": LOGGER_NAMES}

    epochs: int | None = 5
    """Passes over the training windows (the total, counting epochs done before a resume). Left out (None) with
    --max-steps or --time-budget: as many as the budget allows."""
    max_steps: int | None = None
    """Stop after this many optimizer steps in total (an epoch cut short still ends with a full evaluation)."""
    batch_size: int = 64
    """Windows (or lines) per batch in each process."""
    lr: float = 3e-3
    """Peak learning rate."""
    optimizer: str = "adamw"
    """adam, adamw, or muon: Muon for the 2-D weights of the hidden layers at `muon_lr`, AdamW at `lr` for the
    rest (embeddings, head, norms, biases); see training/optim.py."""
    muon_lr: float = 0.03
    """Peak learning rate of Muon's updates (--optimizer muon); it follows the same schedule as `lr`."""
    fused: bool = False
    """Adam/AdamW through torch's fused kernel (one kernel for all tensors: faster on GPUs) instead of its
    default implementation."""
    weight_decay: float = 0.0
    """Weight decay: decoupled (AdamW, Muon) or added to the gradient (Adam)."""
    betas: tuple[float, float] = (0.9, 0.99)
    """Adam/AdamW's decay rates of the running averages of the gradient and of its square."""
    lr_schedule: str = "constant"
    """constant (after warm-up), cosine or linear (down to min_lr_ratio * lr at the last planned step, or at
    the end of the time budget, whichever comes first)."""
    warmup_steps: int = 50
    """Optimizer steps over which the learning rate rises linearly to `lr` at the start."""
    min_lr_ratio: float = 0.1
    """Where the cosine and linear decays end, as a share of `lr`."""
    grad_clip: float = 1.0
    """Clip the gradient norm to this value (0 disables)."""
    patience: int = 5
    """Stop after this many epochs without a better validation loss (0 disables early stopping)."""
    seed: int = 1337
    """Seed of the initial weights, the batch order of every epoch (derived from it) and the samples."""
    device: str = "auto"
    """auto, cpu, cuda, cuda:N or mps."""
    precision: str = "auto"
    """Autocast for training: bf16, fp32, or auto: bf16 on GPUs that support it and on CPUs that compute bf16
    natively where a probe step of the model runs and is faster; else fp32 (tinylm/machine/devices.py). Evaluation runs
    in fp32."""
    threads: int | None = None
    """CPU threads for torch in each process (default: the physical cores shared among the processes)."""
    eval_batch_size: int = 128
    """Windows per batch when evaluating on the validation text."""
    checkpoint_every: int = 0
    """Also checkpoint every N optimizer steps inside an epoch (0: only at the end of each epoch)."""
    sample_prompt: str | None = None
    """Prompt of the sample printed after every epoch (default: the start of the training text)."""
    sample_tokens: int = 200
    """Tokens generated for the sample printed after every epoch."""
    sample_temperature: float = 0.8
    """Temperature of the sample printed after every epoch."""
    processes: int = 1
    """Training processes on this machine (PyTorch DDP, started by torchrun's launcher), each with cores //
    processes threads. Two single-threaded processes train a small LSTM 1.2x faster than one with two threads
    on a 2-core CPU. From Python, start the script with torchrun instead."""
    stateful: bool = False
    """Carry the recurrent state from batch to batch (truncated backpropagation through time): each batch row
    continues a contiguous stream of the text, so the model learns from context longer than one window, as
    it is evaluated. Recurrent models only; --stride is not used."""
    time_budget: float | None = None
    """Stop after this many seconds of wall time spent training, the evaluations after each epoch included
    (then evaluate and keep the best checkpoint)."""
    logger: str = "none"
    """Experiment tracker: none, csv, tensorboard or wandb (metrics.jsonl is always written)."""
    wandb_project: str | None = None
    """W&B project of the run with --logger wandb (default: tinylm)."""
    run_name: str | None = None
    """Name of the run in the experiment tracker (default: the run directory's name)."""

    def epochs_left(self, done: int) -> bool:
        """Whether the plan has an epoch after the `done` ones (always, when a budget decides)."""
        return self.epochs is None or done < self.epochs

    def epoch_label(self, epoch: int) -> str:
        """ "3/5", or "3" when a budget decides how many epochs there are."""
        return str(epoch) if self.epochs is None else f"{epoch}/{self.epochs}"

    def __post_init__(self) -> None:
        check_types(self)
        self.betas = tuple(self.betas)
        if self.epochs is None and self.max_steps is None and self.time_budget is None:
            raise TinyLMError("epochs may be left open only with a step or time budget (--max-steps, "
                              "--time-budget)")
        if self.epochs is not None and self.epochs < 1:
            raise TinyLMError(f"--epochs must be at least 1, got {self.epochs}")
        if self.max_steps is not None and self.max_steps < 1:
            raise TinyLMError(f"--max-steps must be at least 1, got {self.max_steps}")
        if self.batch_size < 1:
            raise TinyLMError(f"--batch-size must be at least 1, got {self.batch_size}")
        check_learning_rate(self.lr)
        check_choices(self)
        check_learning_rate(self.muon_lr, "--muon-lr")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise TinyLMError(f"--min-lr-ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.precision not in ("auto", "bf16", "fp32"):
            raise TinyLMError(f"--precision must be auto, bf16 or fp32, got {self.precision!r}")
        if self.threads is not None and (isinstance(self.threads, bool) or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise TinyLMError(f"--threads must be a whole number >= 1, got {self.threads!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise TinyLMError(f"--weight-decay must be a finite number >= 0, got {self.weight_decay}")
        if not (math.isfinite(self.grad_clip) and self.grad_clip >= 0):
            raise TinyLMError(f"--grad-clip must be a finite number >= 0 (0 disables), got {self.grad_clip}")
        if self.eval_batch_size < 1:
            raise TinyLMError(f"--eval-batch-size must be at least 1, got {self.eval_batch_size}")
        if self.time_budget is not None and not (math.isfinite(self.time_budget) and self.time_budget > 0):
            raise TinyLMError(f"--time-budget must be a positive number of seconds, got {self.time_budget}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise TinyLMError(f"--seed must be a whole number from 0 to {MAX_SEED}, got {self.seed!r}")
        if self.processes < 1:
            raise TinyLMError(f"--processes must be at least 1, got {self.processes}")
        if self.patience < 0 or self.warmup_steps < 0 or self.checkpoint_every < 0:
            raise TinyLMError("--patience, --warmup-steps and --checkpoint-every must not be negative")


@dataclass
class RunConfig:
    """Everything that defines a run. Saved as config.json; `model` is the family's own config."""

    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: Any = field(default_factory=lambda: model_config("lstm"))
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        # A model with a fixed context (a `block_size` field, e.g. learned positions) is sized by the data's
        # windows, so the two can never disagree; replace() re-runs the model config's validation.
        if self.train.stateful:
            from .models import FAMILIES, family_of

            if not FAMILIES[family_of(self.model)].model.carries_state:
                raise TinyLMError("--stateful needs a recurrent model (rnn, gru, lstm): this model's state "
                                  "does not carry the whole past")
            if self.data.lines or self.data.target != "every":
                raise TinyLMError("--stateful reads the text as one stream: not with --lines or --target last")
        names = {f.name for f in dataclasses.fields(self.model)}
        if "block_size" in names and self.model.block_size != self.data.block_size:
            self.model = dataclasses.replace(self.model, block_size=self.data.block_size)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "tinylm_version": __version__,
            "data": dataclasses.asdict(self.data),
            "tokenizer": dataclasses.asdict(self.tokenizer),
            "model": config_to_dict(self.model),
            "train": dataclasses.asdict(self.train),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = CONFIG) -> "RunConfig":
        """A RunConfig from config.json's content, every field checked (type, then the limits of a small model)
        before anything is built from it: a damaged or hostile file is a TinyLMError, never a crash or a hang.
        `where` names the file in the errors (load passes its path)."""
        if not isinstance(data, dict):
            raise TinyLMError(f"{where} is not a valid tinylm config (not a JSON object)")
        data = migrations.upgrade(migrations.CONFIG_JSON, data, where)  # from any earlier format
        try:
            sections = {name: data[name] for name in ("data", "tokenizer", "model", "train")}
        except KeyError as e:
            raise TinyLMError(f"{where} is not a valid tinylm config (no {e.args[0]!r} section)") from None
        for name, section in sections.items():
            if not isinstance(section, dict):
                raise TinyLMError(f"{where} is not a valid tinylm config ({name!r} is not an object)")
        from .models import FAMILIES

        family = sections["model"].get("family")
        if not isinstance(family, str) or family not in FAMILIES:
            raise TinyLMError(f"{where} model field 'family' is {family!r}: expected one of {', '.join(FAMILIES)}")
        data_section = sections["data"]
        if data_section.get("lines") is True and data_section.get("target") == "last":
            # Written by a tinylm that accepted both: line mode's targets (every token) are what such a run
            # trained on, so its config says so now (DataConfig refuses the pair).
            sections["data"] = {**data_section, "target": "every"}
        model_fields = {k: v for k, v in sections["model"].items() if k != "family"}
        for section, kind in (("data", DataConfig), ("tokenizer", TokenizerConfig), ("train", TrainConfig),
                              ("model", FAMILIES[family].config)):
            check_fields(model_fields if section == "model" else sections[section], kind, f"{where} {section}")
        check_limits(sections["data"], model_fields, where)
        try:
            return cls(
                data=DataConfig(**sections["data"]),
                tokenizer=TokenizerConfig(**sections["tokenizer"]),
                model=config_from_dict(sections["model"]),
                train=TrainConfig(**sections["train"]),
            )
        except (KeyError, TypeError, AttributeError, ValueError, OverflowError) as e:
            raise TinyLMError(f"{where} is not a valid tinylm config ({type(e).__name__}: {e})") from None

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> "RunConfig":
        path = Path(path)
        # A fine-tune's config.json is transformers' (so transformers loads the folder); tinylm's is beside it.
        if path.name == CONFIG:
            path = run_config_file(path.parent)
        if not path.is_file():
            raise TinyLMError(f"{path} not found: is {path.parent} a tinylm run directory?")
        try:
            return cls.from_dict(json.loads(path.read_text(encoding="utf-8")), where=str(path))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise TinyLMError(f"{path} is not valid JSON ({e})") from None
        except RecursionError:
            raise TinyLMError(f"{path} is not a valid tinylm config (nested too deeply)") from None


# -- checking what a file says -------------------------------------------------------------------------
def check_fields(values: dict[str, Any], kind: type, where: str) -> None:
    """Refuse keys `kind` (a dataclass) does not have and values of the wrong JSON type, with the field named."""
    hints = typing.get_type_hints(kind)
    for name, value in values.items():
        if name not in hints or name not in {f.name for f in dataclasses.fields(kind)}:
            raise TinyLMError(f"{where} has an unknown field {name!r}")
        if not fits_type(value, hints[name]):
            raise TinyLMError(f"{where} field {name!r} is {value!r}: expected {type_name(hints[name])}")
        if isinstance(value, float) and not math.isfinite(value):
            raise TinyLMError(f"{where} field {name!r} is {value!r}: expected a finite number")



MAX_WEIGHTS = 20_000_000_000
"""Weights (about 80 GB in fp32) an architecture may need, estimated from its widths, depth and vocabulary."""


def check_limits(data: dict[str, Any], model: dict[str, Any], where: str = CONFIG) -> None:
    for name, limit in SIZE_LIMITS.items():
        for section, values in (("data", data), ("model", model)):
            value = values.get(name)
            if isinstance(value, int) and value > limit:
                raise TinyLMError(f"{where} {section} field {name!r} is {value:,}: more than tinylm's limit "
                                  f"of {limit:,}; the file is damaged or not meant for tinylm")
    width = max(int(model.get("embed") or 0), int(model.get("hidden") or 0))
    weights = (12 * int(model.get("layers") or 1) * width * width
               + width * (2 * int(model.get("vocab_size") or 0) + int(data.get("block_size") or 0)))
    if weights > MAX_WEIGHTS:
        raise TinyLMError(f"{where} describes a model of about {weights:,} weights: more than tinylm's limit "
                          f"of {MAX_WEIGHTS:,}; the file is damaged or not meant for tinylm")
