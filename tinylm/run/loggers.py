"""Experiment tracking: what the training loop reports, and where it goes.

The loop calls a Logger at four points; the default logger does nothing, so the core never needs an
optional package. Concrete loggers register in LOGGERS by name (`--logger NAME`). Whatever the logger,
the run directory's own metrics.jsonl is always written by the loop itself.

    none         nothing beyond metrics.jsonl / samples.jsonl / summary.json
    csv          steps.csv (every logged step) and epochs.csv (one row per epoch) in the run directory
    tensorboard  event files in RUN/tensorboard/ (`tensorboard --logdir RUN/tensorboard`)
    wandb        Weights & Biases: online when logged in, otherwise offline files to upload with `wandb sync`

A W&B run folder is read back with `read_wandb_run` (the .wandb log itself, whatever the wandb version): the
course's `tinylm project check` reads students' runs with it, and the tests read tinylm's own.

Optional packages (wandb, tensorboard) are imported when such a logger is made, never when tinylm is.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import math
import netrc
import os
import re
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import TinyLMError
from ..io import read_jsonl, write_text
from .layout import LOSS_PLOT, METRICS, SAMPLES

# The per-epoch record of metrics.jsonl, as the trackers name it (the record's other keys are bookkeeping).
EPOCH_METRICS = {
    "train_loss": "train/epoch_loss",
    "val_loss": "val/loss",
    "val_perplexity": "val/perplexity",
    "val_bits_per_char": "val/bits_per_char",
    "lr": "epoch/lr",  # not train/lr: log_step writes that one, often at the step an epoch ends
    "tokens_per_s": "epoch/tokens_per_s",
    "epoch_seconds": "epoch/seconds",
    "eval_seconds": "epoch/eval_seconds",
}
SAMPLE_COLUMNS = ["epoch", "step", "prompt", "temperature", "text"]


class Logger:
    """Receives metrics from the training loop. Subclasses override what they need."""

    def __init__(self, run_dir: Path, project: str | None = None, name: str | None = None):
        self.run_dir = Path(run_dir)
        self.project = project
        self.name = name or self.run_dir.name

    def check(self) -> None:
        """Before anything of the run is written: read what this logger wrote there earlier (a resume), refusing
        a damaged file."""

    def start(self, config: dict[str, Any], info: dict[str, Any]) -> None:
        """Before the first step: the run's config.json content and facts such as parameters and device."""

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        """Every few steps: train/loss, train/lr, train/tokens_per_s."""

    def log_epoch(self, epoch: int, step: int, metrics: dict[str, Any], sample: dict[str, Any]) -> None:
        """After each epoch: the metrics.jsonl record and the sample {"epoch", "prompt", "temperature", "text"}."""

    def finish(self, summary: dict[str, Any], failed: bool = False) -> None:
        """At the end (also after an error): summary.json's content; loss.png is in run_dir."""


def _require(module: str, logger: str, package: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise TinyLMError(f"--logger {logger} needs the {package} package: pip install {package} "
                          f"(or pip install 'tinylm[tracking]')") from None


def _epoch_values(metrics: dict[str, Any]) -> dict[str, float]:
    return {name: metrics[key] for key, name in EPOCH_METRICS.items() if metrics.get(key) is not None}


class CsvLogger(Logger):
    """steps.csv and epochs.csv in the run directory, for spreadsheets and pandas.

    Rows are kept in memory and each file is rewritten atomically after every epoch and at the end, so a
    crash never leaves a torn row. On --resume the existing rows are kept up to the point training resumes
    from (rows a crashed run wrote past its checkpoint are replaced as the loop redoes those steps)."""

    _steps: list[dict[str, Any]] | None = None  # the rows so far (read by check)
    _epochs: list[dict[str, Any]] | None = None

    def check(self) -> None:
        self._steps = _read_csv(self.run_dir / "steps.csv", "step")
        self._epochs = _read_csv(self.run_dir / "epochs.csv", "epoch")

    def start(self, config: dict[str, Any], info: dict[str, Any]) -> None:
        if self._steps is None:
            self.check()
        self._resumed_steps = self._resumed_epochs = False

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        if not self._resumed_steps:
            self._steps = [row for row in self._steps if row["step"] < step]
            self._resumed_steps = True
        self._steps.append({"step": step, **metrics})

    def log_epoch(self, epoch: int, step: int, metrics: dict[str, Any], sample: dict[str, Any]) -> None:
        if not self._resumed_epochs:
            self._epochs = [row for row in self._epochs if row["epoch"] < epoch]
            self._resumed_epochs = True
        values = {k: v for k, v in metrics.items() if k not in ("epoch", "step", "train_curve")}
        self._epochs.append({"epoch": epoch, "step": step, **values})
        self._write()

    def finish(self, summary: dict[str, Any], failed: bool = False) -> None:
        self._write()

    def _write(self) -> None:
        for name, rows in (("steps.csv", self._steps), ("epochs.csv", self._epochs)):
            if rows:
                write_text(self.run_dir / name, _csv_text(rows))


def _read_csv(path: Path, counter: str) -> list[dict[str, Any]]:
    """The rows of a CSV file this logger wrote ([] when absent), each with a whole-number `counter` column (step
    or epoch); a damaged file is a TinyLMError naming it and the row."""
    if not path.is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except (UnicodeDecodeError, csv.Error) as e:
        raise TinyLMError(f"{path} is damaged ({e}); move it away to resume without it") from None
    for number, row in enumerate(rows, 2):
        try:
            row[counter] = int(row.get(counter) or "")
        except ValueError:
            raise TinyLMError(f"{path} is damaged: row {number} has no whole-number {counter!r}; move the file "
                              f"away to resume without it") from None
    return rows


def _csv_text(rows: list[dict[str, Any]]) -> str:
    columns = list(dict.fromkeys(key for row in rows for key in row))  # union, in order of appearance
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _hparams(config: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """The run's settings as TensorBoard hyperparameters: `section.field` for every scalar of the config
    (nested values such as a transformers config are left to the config text) and the run's facts."""
    values = {f"{section}.{key}": value for section, fields in config.items() if isinstance(fields, dict)
              for key, value in fields.items()}
    values.update(info)
    return {k: v for k, v in values.items() if isinstance(v, (bool, int, float, str))}


class TensorBoardLogger(Logger):
    """Event files in RUN/tensorboard/: scalars per step and per epoch, the config and samples as text,
    the loss curve as an image, and an hparams entry (settings + best validation loss and perplexity) for
    TensorBoard's HParams tab, in the same event files (one run folder, not one per call)."""

    def __init__(self, run_dir: Path, project: str | None = None, name: str | None = None):
        super().__init__(run_dir, project, name)
        _require("tensorboard", "tensorboard", "tensorboard")  # torch's SummaryWriter needs it installed
        self._writer = None

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "tensorboard"

    def start(self, config: dict[str, Any], info: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(self.log_dir))
        self._hparams = _hparams(config, info)
        # TensorBoard renders text as Markdown: a fenced block keeps the JSON readable.
        self._writer.add_text("config", f"```json\n{json.dumps({**config, 'info': info}, indent=2)}\n```", 0)

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self._writer.add_scalar(key, value, step)

    def log_epoch(self, epoch: int, step: int, metrics: dict[str, Any], sample: dict[str, Any]) -> None:
        self._writer.add_scalar("epoch", epoch, step)
        for key, value in _epoch_values(metrics).items():
            self._writer.add_scalar(key, value, step)
        text = "\n".join("    " + line for line in sample["text"].splitlines())  # indented = verbatim
        header = f"epoch {epoch}, temperature {sample['temperature']}:"
        self._writer.add_text("samples", f"{header}\n\n{text}", step)
        self._writer.flush()

    def finish(self, summary: dict[str, Any], failed: bool = False) -> None:
        if self._writer is None:
            return
        curve = self.run_dir / LOSS_PLOT
        if curve.is_file():
            import matplotlib.image

            pixels = matplotlib.image.imread(str(curve))[..., :3]  # (H, W, RGBA) floats; drop alpha
            self._writer.add_image("loss_curve", pixels, summary.get("steps") or 0, dataformats="HWC")
        if summary.get("best_val_loss") is not None:
            from torch.utils.tensorboard.summary import hparams

            best = summary["best_val_loss"]
            scores = {"hparams/best_val_loss": best, "hparams/best_val_perplexity": math.exp(min(best, 700.0))}
            # SummaryWriter.add_hparams would write them to a new sub-folder, a second run in the UI.
            for summary_proto in hparams(self._hparams, scores):
                self._writer._get_file_writer().add_summary(summary_proto)
            for key, value in scores.items():
                self._writer.add_scalar(key, value, summary.get("steps") or 0)
        self._writer.close()
        print(f"tensorboard: view with: tensorboard --logdir {self.log_dir}", file=sys.stderr)


def wandb_mode() -> str:
    """online when W&B credentials are configured, else offline; WANDB_MODE, when set, decides.

    Credentials are looked up the way `wandb login` stores them (WANDB_API_KEY, or the netrc entry of the
    W&B host), without asking the server: a training run must not stall on the network before it starts."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if os.environ.get("WANDB_API_KEY"):
        return "online"
    host = urlsplit(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    try:
        found = netrc.netrc(os.environ.get("NETRC") or None).authenticators(host)
    except (OSError, netrc.NetrcParseError):
        found = None
    return "online" if found else "offline"


class WandbLogger(Logger):
    """Weights & Biases: config, train/* every few steps, val/* and the samples table every epoch, the
    loss curve and summary at the end. W&B's files go to RUN/wandb/ unless WANDB_DIR says otherwise."""

    def __init__(self, run_dir: Path, project: str | None = None, name: str | None = None):
        super().__init__(run_dir, project, name)
        self._wandb = _require("wandb", "wandb", "wandb")
        self._run = None
        self._samples: list[list[Any]] = []

    def start(self, config: dict[str, Any], info: dict[str, Any]) -> None:
        wandb = self._wandb
        mode = wandb_mode()
        try:
            self._run = wandb.init(
                project=self.project or "tinylm", name=self.name, mode=mode, config={**config, "info": info},
                # Read here, not left to wandb: it reads WANDB_DIR once per process, at its first run.
                dir=os.environ.get("WANDB_DIR") or str(self.run_dir),
                settings=wandb.Settings(silent=True),  # tinylm prints the line that matters: where it went
            )
        except wandb.errors.Error as e:
            raise TinyLMError(f"wandb could not start a run ({str(e).strip().splitlines()[0]}); "
                              f"set WANDB_MODE=offline to log offline, or choose another --logger") from None
        # Epoch metrics plot against the epoch in the W&B UI; step metrics against the optimizer step.
        self._run.define_metric("epoch")
        for pattern in ("val/*", "epoch/*", "train/epoch_loss"):
            self._run.define_metric(pattern, step_metric="epoch")
        # A W&B Table cannot grow once logged, so every epoch logs the table of all samples so far;
        # after --resume it starts from the samples of the epochs already done.
        steps = {r["epoch"]: r["step"] for r in read_jsonl(self.run_dir / METRICS)}
        self._samples = [[r["epoch"], steps.get(r["epoch"], 0), r["prompt"], r["temperature"], r["text"]]
                         for r in read_jsonl(self.run_dir / SAMPLES)]
        where = f"project {self._run.project!r}" + (f" ({self._run.url})" if mode == "online" else "")
        print(f"wandb: {mode} run {self.name!r} in {where}", file=sys.stderr)

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        self._run.log(metrics, step=step)

    def log_epoch(self, epoch: int, step: int, metrics: dict[str, Any], sample: dict[str, Any]) -> None:
        self._samples.append([epoch, step, sample["prompt"], sample["temperature"], sample["text"]])
        # A copy: the Table keeps a reference to its rows, and the next epoch appends to ours.
        table = self._wandb.Table(columns=SAMPLE_COLUMNS, data=list(self._samples))
        self._run.log({"epoch": epoch, **_epoch_values(metrics), "samples": table}, step=step)

    def finish(self, summary: dict[str, Any], failed: bool = False) -> None:
        if self._run is None:
            return
        curve = self.run_dir / LOSS_PLOT
        if curve.is_file():
            self._run.log({"loss_curve": self._wandb.Image(str(curve))}, step=summary.get("steps") or 0)
        self._run.summary.update({k: v for k, v in summary.items() if v is not None})
        offline = self._run.offline
        folder = Path(self._run.dir).parent  # run.dir is the run's files/ folder; sync takes its parent
        self._run.finish(exit_code=1 if failed else 0)
        if offline:
            print(f"wandb: offline run saved; upload it with: wandb sync {folder}", file=sys.stderr)


LOGGERS: dict[str, Callable[..., Logger]] = {
    "none": Logger,
    "csv": CsvLogger,
    "tensorboard": TensorBoardLogger,
    "wandb": WandbLogger,
}
"""One class per name of tinylm.config.LOGGER_NAMES (what --logger accepts)."""


def make_logger(name: str, run_dir: Path, project: str | None = None, run_name: str | None = None) -> Logger:
    if name not in LOGGERS:
        raise TinyLMError(f"unknown logger {name!r}; choose one of {', '.join(LOGGERS)}")
    return LOGGERS[name](run_dir, project=project, name=run_name)


# -- reading a W&B run back -----------------------------------------------------------------------------------
@dataclass
class WandbRun:
    """A W&B run as its local folder holds it (offline-run-* or, once synced or online, run-*)."""

    folder: Path
    name: str
    project: str
    entity: str
    run_id: str
    config: dict
    history: list[dict]
    summary: dict
    exit_code: int | None

    @property
    def offline(self) -> bool:
        return self.folder.name.startswith("offline-run-")

    @property
    def url(self) -> str | None:
        """The run's page (None for an offline run: it has no page until `wandb sync` uploads it)."""
        if self.offline or not (self.entity and self.project and self.run_id):
            return None
        return f"https://wandb.ai/{self.entity}/{self.project}/runs/{self.run_id}"

    def media(self, relative: str) -> Path:
        return self.folder / "files" / relative


def wandb_run_folders(root: str | Path) -> list[Path]:
    """W&B run folders (offline-run-* or run-*, each holding a run-*.wandb log) anywhere under `root`."""
    return sorted({log.parent for log in Path(root).rglob("run-*.wandb")
                   if log.parent.name.startswith(("offline-run-", "run-"))})


def wandb_records(path: Path) -> Iterator[Any]:
    """The protobuf records of a .wandb file: LevelDB log format (7-byte file header ':W&B' + magic 0xBEE1 +
    version, then 32 KiB blocks of chunks <crc32 u32, length u16, type u8>; type 1 = a whole record, 2/3/4 =
    first/middle/last piece of one). Readable whatever the wandb version; a file still being written ends at its
    last whole record."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    if data[:4] != b":W&B" or struct.unpack("<H", data[4:6])[0] != 0xBEE1:
        raise TinyLMError(f"{path} is not a W&B log (.wandb)")
    block, pos, pending = 32768, 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a chunk header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if pos + 7 + length > len(data):
            return
        payload, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            yield wandb_internal_pb2.Record.FromString(payload)
        elif kind == 2:
            pending = payload
        elif kind == 3:
            pending += payload
        elif kind == 4:
            yield wandb_internal_pb2.Record.FromString(pending + payload)
            pending = b""
        else:
            raise TinyLMError(f"{path} is damaged (chunk type {kind})")


def _items(items) -> dict:
    # Keys come flat (key) or as a path (nested_key: media fields such as loss_curve.path).
    return {item.key or ".".join(item.nested_key): json.loads(item.value_json) for item in items}


def read_wandb_run(folder: str | Path, timeout: float = 0.0) -> WandbRun:
    """The run logged in `folder` (its run-*.wandb file); with `timeout`, wait up to that many seconds for its
    exit record (wandb's service writes the log on its own thread: run.finish() can return before the file is
    complete, and the process's exit flushes it)."""
    folder = Path(folder)
    deadline = time.monotonic() + timeout
    while True:
        run = _parse_wandb_run(folder)
        if run.exit_code is not None or time.monotonic() >= deadline:
            return run
        time.sleep(0.2)


def _parse_wandb_run(folder: Path) -> WandbRun:
    logs = sorted(folder.glob("run-*.wandb"))
    if not logs:
        raise TinyLMError(f"{folder} holds no W&B log (run-*.wandb)")
    run = {"name": "", "project": "", "entity": "", "run_id": "", "config": {}, "history": [], "summary": {},
           "exit_code": None}
    for record in wandb_records(logs[0]):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run.update(name=record.run.display_name, project=record.run.project, entity=record.run.entity,
                       run_id=record.run.run_id)
            run["config"].update(_items(record.run.config.update))
        elif kind == "config":
            run["config"].update(_items(record.config.update))
        elif kind == "history":
            run["history"].append(_items(record.history.item))
        elif kind == "summary":
            run["summary"].update(_items(record.summary.update))
        elif kind == "exit":
            run["exit_code"] = record.exit.exit_code
    return WandbRun(folder=folder, **run)


TRAIN_LOSS = re.compile(r"train.*loss|loss.*train", re.IGNORECASE)
EVAL_LOSS = re.compile(r"(eval|val).*loss|loss.*(eval|val)", re.IGNORECASE)


def loss_keys(history: list[dict]) -> tuple[str | None, str | None]:
    """(the training loss key, the evaluation loss key) of a W&B history (train/loss and eval/loss,
    train_loss and val_loss, ...), each None when the history has none."""
    keys = list(dict.fromkeys(key for row in history for key in row))
    train = next((k for k in keys if TRAIN_LOSS.search(k) and not EVAL_LOSS.search(k)), None)
    return train, next((k for k in keys if EVAL_LOSS.search(k)), None)
