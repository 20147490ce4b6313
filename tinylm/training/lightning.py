"""tinylm inside PyTorch Lightning: any tinylm model as a LightningModule, tinylm's data as a LightningDataModule,
and the result saved as a tinylm run directory (so `tinylm sample`, `eval`, `push` and `tinylm.load` read it).

    pip install 'tinylm[lightning]'

    import lightning.pytorch as pl
    from tinylm.training.lightning import LitCharRNN, TextDataModule, callbacks, save_run

    data = TextDataModule.exercise("shakespeare")      # maxlen-40 / step-3 windows, many-to-one, batch 128
    model = LitCharRNN(data.vocab_size)                # the exercise's signature: embed 64, hidden 128, ...
    recorder, *others = callbacks("runs/lit", patience=5)   # EarlyStopping(patience=5), ModelCheckpoint
    pl.Trainer(max_epochs=50, callbacks=[recorder, *others]).fit(model, data)
    save_run(model, data, "runs/lit", recorder)        # config.json, tokenizer, model.safetensors, metrics.jsonl

or in one call: `run = fit(model, data, "runs/lit", max_epochs=50)`, which returns the loaded run.

What differs from `tinylm train`: Lightning's own loop trains (fp32 unless the Trainer is given a precision,
Adam/AdamW at a constant learning rate, gradient clipping by the Trainer), and the validation loss after each
epoch scores the validation split by windows, each read from a fresh state (`val_context: windows` in
metrics.jsonl); `tinylm eval RUN` reads recurrent models' text as streams, so its loss can be a little lower.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F

from ..config import DataConfig, RunConfig, TrainConfig, check_learning_rate
from ..data import IGNORE, evaluation_examples, load_split, training_examples
from ..errors import TinyLMError
from ..evaluation.scoring import summarize, token_losses
from ..io import write_json, write_jsonl
from ..models import LanguageModel, build_model, config_to_dict, model_config
from ..models.weights import save_weights
from ..plots import plot_loss
from ..run.layout import CONFIG, LOSS_PLOT, METRICS, SUMMARY, WEIGHTS, check_run_output, default_sample_prompt
from ..run.loading import LoadedModel, load_run
from ..tokenizers import TokenizerConfig, build_tokenizer
from .presets import PRESETS

try:  # the optional extra: `import tinylm` never needs it, `import tinylm.training.lightning` does
    import lightning.pytorch as pl
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
except ImportError:
    raise TinyLMError("tinylm.training.lightning needs PyTorch Lightning: pip install 'tinylm[lightning]'") from None

LIGHTNING_DIR = "lightning"  # ModelCheckpoint's .ckpt files inside the run directory (for trainer.fit(ckpt_path=))

__all__ = ["LIGHTNING_DIR", "LitCharRNN", "LitLanguageModel", "RunRecorder", "TextDataModule", "callbacks", "fit",
           "prepare_out_dir", "save_run"]


class LitLanguageModel(pl.LightningModule):
    """Any tinylm model (`logits, state = model(ids, state)`) trained by Lightning on tinylm's (x, y) batches:
    cross-entropy over the targets that are not IGNORE (every position, the last one only, or a padded line's
    tokens), Adam or AdamW at a constant learning rate.

    `model` is a model config (`tinylm.model_config("gru", hidden=256)`) or a built tinylm model; the vocabulary
    size must be the tokenizer's (`TextDataModule.vocab_size`)."""

    def __init__(self, model: Any, lr: float = 3e-3, optimizer: str = "adamw", weight_decay: float = 0.0,
                 betas: tuple[float, float] = (0.9, 0.99)):
        super().__init__()
        self.model = model if isinstance(model, LanguageModel) else build_model(model)
        if not self.model.trainable:
            raise TinyLMError(f"a {self.model.family} model learns by counting, not by gradient steps: "
                              f"train it with tinylm.train")
        if self.model.config.vocab_size < 1:
            raise TinyLMError("the model config has no vocabulary size: pass vocab_size=data.vocab_size")
        if optimizer not in ("adam", "adamw"):
            raise TinyLMError(f"optimizer must be adam or adamw, got {optimizer!r}")
        check_learning_rate(lr, "lr")
        if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not 0 <= weight_decay < 1e3:
            raise TinyLMError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
        self.lr, self.optimizer_name, self.weight_decay, self.betas = lr, optimizer, weight_decay, tuple(betas)
        self.save_hyperparameters({"model": config_to_dict(self.model.config), "lr": lr, "optimizer": optimizer,
                                   "weight_decay": weight_decay, "betas": list(betas)})
        self._val_nats, self._val_tokens = 0.0, 0

    @property
    def model_config(self) -> Any:
        return self.model.config

    def forward(self, ids: torch.Tensor, state: Any = None) -> tuple[torch.Tensor, Any]:
        return self.model(ids, state)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> torch.Tensor:
        x, y = batch
        logits, _ = self.model(x, None)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), ignore_index=IGNORE)
        self.log("train_loss", loss, prog_bar=True, batch_size=x.size(0))
        return loss

    # The validation loss is the mean over every scored token of the split (not a mean of batch means):
    # summed over the batches of the epoch, divided at its end.
    def on_validation_epoch_start(self) -> None:
        self._val_nats, self._val_tokens = 0.0, 0

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> None:
        nats, tokens = token_losses(self.model, [batch], self.device)
        self._val_nats += nats
        self._val_tokens += tokens

    def on_validation_epoch_end(self) -> None:
        if self._val_tokens:
            self.log("val_loss", self._val_nats / self._val_tokens, prog_bar=True)

    def validation_totals(self) -> tuple[float, int]:
        """(nats, scored tokens) of the validation epoch that just ended."""
        return self._val_nats, self._val_tokens

    def configure_optimizers(self) -> torch.optim.Optimizer:
        kind = torch.optim.AdamW if self.optimizer_name == "adamw" else torch.optim.Adam
        return kind(self.model.parameters(), lr=self.lr, betas=self.betas, weight_decay=self.weight_decay)


class LitCharRNN(LitLanguageModel):
    """The Shakespeare exercise's model with its signature: a character embedding (`embed_dim`), one LSTM layer
    (`hidden_size`), dropout -> dense + ReLU -> dropout -> logits, Adam at `lr`. It is tinylm's `exercise`
    preset, so it is many-to-one when trained on `TextDataModule.exercise(...)` windows (maxlen 40, step 3:
    only the character after each window is a target), and generates character by character."""

    def __init__(self, vocab_size: int, embed_dim: int = 64, hidden_size: int = 128, dropout: float = 0.2,
                 lr: float = 5e-3):
        preset = {k: v for k, v in PRESETS["exercise"]["model"].items() if k != "name"}
        config = model_config(PRESETS["exercise"]["model"]["name"], **{
            **preset, "vocab_size": vocab_size, "embed": embed_dim, "hidden": hidden_size, "dropout": dropout})
        super().__init__(config, lr=lr, optimizer=PRESETS["exercise"]["train"]["optimizer"])


class _Batches:
    """A re-iterable source of (x, y) batches for Lightning: `make(epoch)` builds one epoch's batches."""

    def __init__(self, make: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]], length: int | None):
        self._make, self._length = make, length

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(self._make())

    def __len__(self) -> int:
        if self._length is None:
            raise TypeError("the number of batches is not known in advance")
        return self._length


class TextDataModule(pl.LightningDataModule):
    """tinylm's data stage as a LightningDataModule: the text of a `DataConfig` (a file, a folder, a built-in
    corpus, gutenberg:ID, hf:NAME; its validation split), a tokenizer trained on the training text, and the
    examples tinylm trains on: windows with a target at every position, the exercise's many-to-one windows
    (`target="last"`, `block_size` = maxlen, `stride` = step) or one padded line per sample (`lines=True`).

    The text is read and the tokenizer built at construction, so `vocab_size` is known before the model is
    made. Each epoch's batch order depends only on (seed, epoch), as in `tinylm train`."""

    def __init__(self, data: DataConfig | str | Path = "shakespeare", tokenizer: TokenizerConfig | str = "char", *,
                 batch_size: int = 64, eval_batch_size: int = 128, seed: int = 1337):
        super().__init__()
        self.data = data if isinstance(data, DataConfig) else DataConfig(source=str(data))
        self.tokenizer_config = tokenizer if isinstance(tokenizer, TokenizerConfig) else TokenizerConfig(kind=tokenizer)
        if batch_size < 1 or eval_batch_size < 1:
            raise TinyLMError("batch sizes must be at least 1")
        self.batch_size, self.eval_batch_size, self.seed = batch_size, eval_batch_size, seed
        self.train_text, self.val_text = load_split(self.data)
        self.tokenizer = build_tokenizer(self.tokenizer_config, self.train_text)
        self.train_examples = training_examples(self.tokenizer, self.train_text, self.data)
        self.val_examples = evaluation_examples(self.tokenizer, self.val_text, self.data)
        if self.val_examples.tokens <= (self.data.block_size if self.data.target == "last" else 1):
            raise TinyLMError(f"the validation split has {self.val_examples.tokens} tokens, too few to evaluate; "
                              f"raise val_fraction")

    @classmethod
    def exercise(cls, source: str | Path = "shakespeare", **options: Any) -> "TextDataModule":
        """The exercise's data: windows of 40 characters every 3 (the `exercise` preset), batches of 128."""
        options.setdefault("batch_size", PRESETS["exercise"]["train"]["batch_size"])
        strip = options.pop("strip_gutenberg", False)
        return cls(DataConfig(source=str(source), strip_gutenberg=strip, **PRESETS["exercise"]["data"]), **options)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def _epoch(self) -> int:
        return self.trainer.current_epoch if self.trainer is not None else 0

    def train_dataloader(self) -> _Batches:
        examples, size = self.train_examples, self.batch_size
        return _Batches(lambda: examples.epoch(size, seed=self.seed * 1_000_003 + self._epoch()),
                        examples.num_batches(size))

    def val_dataloader(self) -> _Batches:
        return _Batches(lambda: self.val_examples.batches(self.eval_batch_size), None)


class RunRecorder(pl.Callback):
    """Records each validated epoch as tinylm's loop does (a metrics.jsonl record: losses, perplexity, bits per
    character, speed) and keeps a copy of the best weights (lowest validation loss), for `save_run`."""

    def __init__(self) -> None:
        self.records: list[dict] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_val_loss: float | None = None
        self.best_epoch: int | None = None
        self.train_seconds = 0.0
        self._reset_epoch()

    def _reset_epoch(self) -> None:
        self._loss_sum, self._rows, self._tokens, self._curve = 0.0, 0, 0, []
        self._started = time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._reset_epoch()

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_index: int) -> None:
        x, _ = batch
        loss = float(outputs["loss"] if isinstance(outputs, dict) else outputs)
        self._loss_sum += loss * x.size(0)
        self._rows += x.size(0)
        self._tokens += x.numel()
        self._curve.append([trainer.global_step, round(loss, 5)])

    def on_validation_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        nats, tokens = module.validation_totals()
        if not tokens:
            return
        seconds = time.perf_counter() - self._started
        self.train_seconds += seconds
        examples = trainer.datamodule.val_examples
        result = summarize(nats, tokens, examples.chars, examples.tokens, "windows")
        improved = self.best_val_loss is None or result.loss < self.best_val_loss
        epoch = trainer.current_epoch + 1
        if improved:
            self.best_val_loss, self.best_epoch = result.loss, epoch
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in module.model.state_dict().items()}
        steps = trainer.num_training_batches if math.isfinite(trainer.num_training_batches) else None
        cut_short = bool(trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps and steps
                         and trainer.global_step % steps)  # a step budget ended the epoch early
        self.records.append({
            "epoch": epoch, "step": trainer.global_step,
            "train_loss": round(self._loss_sum / self._rows, 6) if self._rows else None,
            "val_loss": round(result.loss, 6), "val_perplexity": round(result.perplexity, 4),
            "val_bits_per_char": round(result.bits_per_char, 5), "val_context": result.context,
            "lr": trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None,
            "tokens_per_s": round(self._tokens / max(seconds, 1e-9), 1), "epoch_seconds": round(seconds, 2),
            "best": improved, "steps_per_epoch": steps,
            # tinylm's loss plot draws the running loss against the epoch: [step within the run, loss] points
            "train_curve": [[s, v] for s, v in self._curve[:: max(1, len(self._curve) // 25)]],
            **({"partial": True} if cut_short else {}),
        })


def callbacks(out: str | Path, patience: int = 5) -> list[pl.Callback]:
    """[RunRecorder, EarlyStopping, ModelCheckpoint]: what a Trainer needs for `save_run`, stopping after
    `patience` epochs without a better validation loss, and Lightning's own checkpoint of the best epoch in
    OUT/lightning/best.ckpt (to continue with `trainer.fit(..., ckpt_path=...)`)."""
    return [RunRecorder(),
            # checked after each validation (not at the end of a training epoch, which a step budget may cut
            # short with no validation: save_run then validates the last weights itself)
            EarlyStopping(monitor="val_loss", mode="min", patience=patience, check_on_train_epoch_end=False),
            ModelCheckpoint(dirpath=Path(out) / LIGHTNING_DIR, filename="best", monitor="val_loss", mode="min",
                            save_top_k=1)]


def _check_fits(module: LitLanguageModel, data: TextDataModule) -> None:
    """The model reads the data's tokens, and a fixed-context model (a GPT) its windows."""
    config = module.model.config
    if config.vocab_size != data.vocab_size:
        raise TinyLMError(f"the model has {config.vocab_size} output tokens but the data's tokenizer has "
                          f"{data.vocab_size}: build it with vocab_size=data.vocab_size")
    context = getattr(config, "block_size", None)
    if context is not None and context != data.data.block_size:
        raise TinyLMError(f"the model's context ({context}) differs from the data's block size "
                          f"({data.data.block_size}): build the model with block_size={data.data.block_size}")


def prepare_out_dir(out: str | Path, overwrite: bool = False) -> None:
    """Refuse an `out` that holds something else than a run (or a run, unless `overwrite`) before training; a
    folder holding only this training's Lightning checkpoints is fine, and a run to overwrite is emptied (but
    for those checkpoints), so no file of the old run stays behind."""
    out = Path(out)
    if out.is_dir() and {p.name for p in out.iterdir()} <= {LIGHTNING_DIR}:
        return
    check_run_output(out, overwrite, resumable=False)
    for path in out.iterdir() if out.is_dir() else ():
        if path.name != LIGHTNING_DIR:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def save_run(module: LitLanguageModel, data: TextDataModule, out: str | Path, recorder: RunRecorder | None = None,
             *, trainer: pl.Trainer | None = None, overwrite: bool = False, sample_prompt: str | None = None) -> Path:
    """Write `module` as a tinylm run directory in `out`: config.json, the tokenizer files, model.safetensors
    (the best epoch's weights when `recorder` kept them; they are also loaded back into `module`),
    metrics.jsonl, loss.png and summary.json. `tinylm sample OUT`, `tinylm eval OUT` and `tinylm.load(OUT)`
    read it like a run of `tinylm train`."""
    out = Path(out)
    prepare_out_dir(out, overwrite)
    model = module.model
    _check_fits(module, data)
    if trainer is not None and recorder is not None and trainer.global_step and (
            not recorder.records or recorder.records[-1]["step"] < trainer.global_step):
        # A step budget ended training inside an epoch, before its validation: validate the last weights now,
        # as tinylm's own loop does (the recorder adds the record; early stopping and checkpoints ignore it)
        trainer.validate(module, datamodule=data, verbose=False)
    records = list(recorder.records) if recorder else []
    if sample_prompt is None:  # as tinylm train: a new line in line mode, else the text's opening words
        sample_prompt = default_sample_prompt(data.train_text, data.data.lines)
    early = next((c for c in (trainer.callbacks if trainer else []) if isinstance(c, EarlyStopping)), None)
    train = TrainConfig(epochs=trainer.max_epochs if trainer and trainer.max_epochs and trainer.max_epochs > 0 else 1,
                        max_steps=trainer.max_steps if trainer and trainer.max_steps > 0 else None,
                        batch_size=data.batch_size, lr=module.lr, optimizer=module.optimizer_name,
                        weight_decay=module.weight_decay, betas=module.betas, warmup_steps=0,
                        grad_clip=float(trainer.gradient_clip_val or 0) if trainer else 0.0,
                        patience=early.patience if early else 0, seed=data.seed, precision="fp32",
                        eval_batch_size=data.eval_batch_size, sample_prompt=sample_prompt)
    config = RunConfig(data=dataclasses.replace(data.data), tokenizer=data.tokenizer_config,
                       model=dataclasses.replace(model.config), train=train)
    if recorder is not None and recorder.best_state is not None:
        model.load_state_dict(recorder.best_state)
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / CONFIG)
    data.tokenizer.save(out)
    save_weights(model, out / WEIGHTS)
    write_jsonl(out / METRICS, records)
    if records and all(r["train_loss"] is not None for r in records):
        plot_loss(records, out / LOSS_PLOT, title=f"{model.describe()} on {data.data.source} (Lightning)")
    stopped = "early_stopping" if early is not None and early.stopped_epoch > 0 else (
        "max_steps" if trainer and trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps else "epochs")
    write_json(out / SUMMARY, {
        "trainer": f"lightning {pl.__version__}", "parameters": model.num_parameters(),
        "train_tokens": data.train_examples.num_tokens, "val_tokens": data.val_examples.tokens,
        "best_val_loss": recorder.best_val_loss if recorder else None,
        "best_epoch": recorder.best_epoch if recorder else None, "epochs": len(records),
        "steps": trainer.global_step if trainer else None,
        "train_seconds": round(recorder.train_seconds, 2) if recorder else None,
        "stop_reason": stopped if trainer else None, "finished": True,
        "early_stopping_epoch": early.stopped_epoch + 1 if early is not None and early.stopped_epoch > 0 else None,
    })
    return out


def fit(module: LitLanguageModel, data: TextDataModule, out: str | Path, *, max_epochs: int = 50,
        max_steps: int = -1, patience: int = 5, overwrite: bool = False, progress: bool = True,
        **trainer_options: Any) -> LoadedModel:
    """Train `module` on `data` with `pl.Trainer` (EarlyStopping(patience), ModelCheckpoint, gradient clipping
    at 1.0), save the best epoch as a tinylm run directory in `out` and return it loaded (`run.generate(...)`,
    `run.evaluate()`). `trainer_options` go to `pl.Trainer` (accelerator, precision, ...)."""
    out = Path(out)
    _check_fits(module, data)  # fail before training, not after
    recorder, *others = callbacks(out, patience)
    options = {"gradient_clip_val": 1.0, "logger": False, "num_sanity_val_steps": 0,
               "enable_progress_bar": progress, "enable_model_summary": progress, **trainer_options}
    try:  # before the folder is touched: a Trainer that refuses its options leaves the old run as it was
        trainer = pl.Trainer(max_epochs=max_epochs, max_steps=max_steps, callbacks=[recorder, *others], **options)
    except (ValueError, TypeError, MisconfigurationException) as e:
        raise TinyLMError(f"pl.Trainer refused its options: {str(e).strip().splitlines()[0]}") from None
    prepare_out_dir(out, overwrite)
    trainer.fit(module, datamodule=data)
    save_run(module, data, out, recorder, trainer=trainer, overwrite=True)
    return load_run(out)
