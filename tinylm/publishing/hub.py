"""Publishing runs on the Hugging Face Hub, and loading them back.

    tinylm.push("runs/lstm", "alice/shakespeare-lstm")                  # create the repo, upload; its URL
    tinylm.push("runs/lstm", "alice/shakespeare-lstm", dry_run="out/")  # the same folder, written locally
    tinylm.load("alice/shakespeare-lstm")                               # download (or use the cache), load

A pushed repo (and a --dry-run folder, byte for byte) holds:

    README.md          the model card: YAML metadata (license, tags, datasets, model-index) + a description
    loss.png           the loss curves the card shows
    config.json, model.safetensors, tokenizer.json, tokenizer_config.json, special_tokens_map.json,
    metrics.jsonl, samples.jsonl, summary.json
                       the run directory's files (not checkpoint/: optimizer state is for --resume only)

GPT runs are also exported to the transformers GPT-2 format (tinylm.publishing.export). The Hub's widgets,
`pipeline("text-generation", model="alice/name")` and `AutoModelForCausalLM` read the repo's root, so the
export takes the root and the run's other files move to the subfolder tinylm/. The weights are uploaded once,
GPT-2's at the root: loading the repo with tinylm rebuilds tinylm's weights from them (the exact inverse of
the export, tinylm.publishing.export.state_dict_from_gpt2) into a run folder in tinylm's cache, keyed by repo and commit
(by content for a local folder), made once and reused. Repos pushed before kept tinylm/model.safetensors as
well: it is used when it is there. A fine-tune run is a transformers folder already (config.json is
transformers', tinylm's is tinylm_config.json beside it): its files all go to the root, with
generation_config.json and the base's tokenizer files. `run_dir_of` and `download_run` find the run in each
layout, so `tinylm.load("alice/name")` loads every family in one call.

huggingface_hub is imported only when something is published or downloaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._version import __version__
from ..errors import TinyLMError
from ..io import as_path, read_jsonl, write_text
from ..run.layout import (
    CONFIG,
    LOSS_PLOT,
    METRICS,
    SAMPLES,
    SUMMARY,
    TINYLM_CONFIG,
    WEIGHTS,
    is_run,
    is_run_config,
    run_config_file,
)
from ..run.loading import LoadedModel, load_run

# The run's files a repo carries (those the run has), and those tinylm.load cannot do without.
RUN_FILES = [CONFIG, TINYLM_CONFIG, WEIGHTS, "generation_config.json", "tokenizer.json",
             "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json",
             "chat_template.jinja", METRICS, SAMPLES, SUMMARY]
REQUIRED = [CONFIG, WEIGHTS, "tokenizer.json"]
RUN_SUBFOLDER = "tinylm"  # where the run's files go when a transformers export takes the root
REBUILT_RUNS = "rebuilt-runs"  # in tinylm's cache: GPT repos' runs with tinylm's weights rebuilt from GPT-2's
CARD_TEMPERATURES = (0.5, 0.8, 1.0)
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
"""A Hub repo id: USER/NAME (the one pattern tinylm checks names against; `is_hub_name` for a base model)."""

# Built-in corpora: title, Hub dataset id, language, and the validation text when it is the corpus' own.
CORPORA = {
    "shakespeare": ("Tiny Shakespeare", "karpathy/tiny_shakespeare", "en", None),
    "wikitext2": ("WikiText-2", "Salesforce/wikitext", "en", "its validation split (valid.txt)"),
}
TOKENIZER_LEVELS = {"char": ("character-level", "char-level"), "word": ("word-level", "word-level"),
                    "bpe": ("subword (byte-level BPE)", "bpe"), "pretrained": ("subword", None)}


def _huggingface_hub():
    try:
        return importlib.import_module("huggingface_hub")
    except ImportError:
        raise TinyLMError("publishing needs huggingface_hub: pip install huggingface_hub "
                          "(or pip install 'tinylm[hf]')") from None


def _endpoint() -> str:
    # huggingface_hub reads HF_ENDPOINT once, when imported; reading it here too honours a value set later.
    _huggingface_hub()  # a missing package is a one-line error
    constants = importlib.import_module("huggingface_hub.constants")  # not an attribute of the package in 1.x+
    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _run_folder(folder: Path) -> Path:
    """Where a pushed repo or --dry-run folder keeps tinylm's files: the folder itself, or its tinylm/
    subfolder (GPT runs, whose root holds the transformers export)."""
    if not is_run(folder) and is_run(folder / RUN_SUBFOLDER):
        return folder / RUN_SUBFOLDER
    return folder


def _holds_gpt2_weights(folder: Path) -> bool:
    """Whether `folder` is a GPT repo's root: a GPT-2 config.json (not a tinylm run's) beside the weights."""
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(config, dict) and config.get("model_type") == "gpt2" and (folder / WEIGHTS).is_file()


def run_dir_of(folder: str | Path) -> Path:
    """The run directory that loads the tinylm run of a pushed repo or --dry-run folder (or of its tinylm/
    subfolder): the folder itself, its tinylm/ subfolder when that holds tinylm's weights (GPT repos pushed
    before the weights were kept once), or a GPT repo's run with its weights rebuilt from the root's GPT-2
    weights in tinylm's cache."""
    run = _run_folder(Path(folder))
    root = run.parent
    if (run.name == RUN_SUBFOLDER and not (run / WEIGHTS).is_file() and is_run(run)
            and _holds_gpt2_weights(root)):
        key = _content_key([root / WEIGHTS, *(run / name for name in RUN_FILES)])
        # A snapshot in the Hugging Face cache stays a stranger's run once rebuilt (see is_rebuilt_from_hub).
        origin = "hub" if is_downloaded(root) else "local"
        return _rebuilt_run(root / WEIGHTS, run, _rebuilt_runs() / origin / key)
    return run


# -- finding a run: a local folder, a pushed folder, or a Hub repo id ------------------------------------------
def is_hub_name(name: str, owner_required: bool = True) -> bool:
    """Whether `name` reads as a Hub repo id (USER/NAME; with `owner_required=False` a bare NAME like gpt2 too)."""
    return bool(REPO_ID.fullmatch(name) or (not owner_required and REPO_ID.fullmatch(f"owner/{name}"))) \
        and len(name) <= 96


def _looks_like_hub_id(name: str) -> bool:
    """USER/NAME that is not a mistyped local path: not runs/NAME (where runs go without --out), and USER not a
    local folder."""
    if not is_hub_name(name):
        return False
    first = name.split("/", 1)[0]
    return first != "runs" and not Path(first).is_dir()


def locate_run(name: str | Path) -> tuple[Path, bool]:
    """(the local run directory, whether it came from the Hub) of a run directory, a folder written by `tinylm
    push` or `--dry-run` (or its tinylm/ subfolder), or a Hub repo id USER/NAME (downloaded to the HF cache)."""
    path = Path(name)
    if path.is_dir():
        run_dir = run_dir_of(path)  # a GPT run's pushed or dry-run folder keeps the run in tinylm/
        return run_dir, is_downloaded(run_dir)
    if path.exists():
        raise TinyLMError(f"{name} is not a run directory (it is a file)")
    if _looks_like_hub_id(str(name)):
        return download_run(str(name)), True
    raise TinyLMError(f"run directory {name} does not exist")


def load(run: str | Path, device: str = "cpu", precision: str = "auto") -> LoadedModel:
    """Load a run in one call: a run directory (config.json, tokenizer.json, model.safetensors), a folder
    written by `tinylm push --dry-run`, or a Hub repo id USER/NAME (the Hub id is resolved first, then the
    local folder is loaded by tinylm.run.loading.load_run). `device` as in tinylm.machine.devices.resolve_device
    ("auto" for the fastest there is); `precision` is what generation uses unless a call says otherwise."""
    from ..machine.devices import check_generation_precision, resolve_device

    check_generation_precision(precision, resolve_device(device))  # a bad choice fails before any download
    run_dir, from_hub = locate_run(as_path(run, "run"))
    return load_run(run_dir, device=device, precision=precision, from_hub=from_hub)


def is_downloaded(run_dir: Path) -> bool:
    """Whether `run_dir` came from the Hub (it lies in the Hugging Face cache, or is a GPT repo's run rebuilt in
    tinylm's cache), so its config is a stranger's."""
    if is_rebuilt_from_hub(run_dir):
        return True
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        return False
    return Path(HF_HUB_CACHE).resolve() in Path(run_dir).resolve().parents


# -- GPT repos: tinylm's weights rebuilt from the root's GPT-2 weights ----------------------------------
def _rebuilt_runs() -> Path:
    from ..data.sources import cache_dir  # TINYLM_CACHE_DIR, else ~/.cache/tinylm

    return cache_dir() / REBUILT_RUNS


def is_rebuilt_from_hub(path: str | Path) -> bool:
    """Whether `path` is a run rebuilt from a downloaded GPT repo (its config is a stranger's, as in the
    Hugging Face cache: see is_downloaded)."""
    return (_rebuilt_runs() / "hub").resolve() in Path(path).resolve().parents


def _content_key(files: list[Path]) -> str:
    """A name for the rebuilt run of a local folder: the digest of the files it is made from, so a folder
    written again (a new --dry-run) is rebuilt again."""
    digest = hashlib.sha256()
    for path in files:
        if path.is_file():
            digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()[:32]


def _rebuilt_run(gpt2_weights: Path | None, run_files: Path, target: Path) -> Path:
    """`target`, a run directory: the files of `run_files` (tinylm's config, tokenizer and metadata, no
    weights) and tinylm's weights rebuilt from the GPT-2 weights file `gpt2_weights` (None: `target` exists
    already). Made once, then reused: written whole by tinylm.folders' rules while held; a second process that
    wants it at the same time waits for the first, then finds it made."""
    if (target / WEIGHTS).is_file():
        return target
    from ..config import RunConfig
    from ..folders import hold, writing_folder
    from ..models import build_model
    from ..models.weights import save_weights
    from .export import gpt_from_gpt2_file

    config = RunConfig.load(run_files / CONFIG)
    model = build_model(config.model)
    if not model.exports_to_transformers:
        raise TinyLMError(f"{run_files} has no {WEIGHTS} and its model is not a GPT whose weights the root's "
                          f"GPT-2 weights hold")
    gpt_from_gpt2_file(gpt2_weights, model)
    try:
        with hold(target, wait=True):
            if (target / WEIGHTS).is_file():  # another process made it while this one waited
                return target
            with writing_folder(target) as staging:
                for name in RUN_FILES:
                    if name != WEIGHTS and (run_files / name).is_file():
                        shutil.copyfile(run_files / name, staging / name)
                save_weights(model, staging / WEIGHTS)
    except OSError as e:
        raise TinyLMError(f"cannot write tinylm's cache {target.parent} ({e.strerror or e}); set "
                          f"TINYLM_CACHE_DIR to a writable folder") from None
    return target


def _exports_transformers(config: dict[str, Any]) -> bool:
    """Whether the run is published in the transformers format as well (GPT runs)."""
    from ..models import FAMILIES

    family = FAMILIES.get(config["model"].get("family"))
    return family is not None and family[1].exports_to_transformers


def _hub_base_model(summary: dict[str, Any]) -> str | None:
    """The Hub id a fine-tune started from (`base_model:` of the card), None for a local folder or run."""
    return summary.get("base_model_id")


# -- the model card ------------------------------------------------------------------------------------
def _fence(text: str) -> str:
    """A Markdown code fence longer than any run of backticks in `text`, so samples cannot break out."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _corpus(source: str) -> tuple[str, str | None, str | None, str | None]:
    """(title, Hub dataset id, language, own validation text) of a DataConfig.source; None where unknown."""
    if source.startswith("hf:"):
        name = source[3:]
        return name, (name if REPO_ID.fullmatch(name) and not Path(name).exists() else None), None, None
    base = source.split(":")[0]
    if base in CORPORA:
        title, dataset, language, validation = CORPORA[base]
        if base != source:  # one split of the corpus used as a plain text
            return f"{title} ({source.split(':', 1)[1]} split)", dataset, language, None
        return title, dataset, language, validation
    return Path(source).name, None, None, None  # a local file or folder: its name, not the author's paths


@dataclass
class CardInfo:
    """What a user adds to a run's model card: the licence, the training text's language(s) and Hub dataset ids
    (the built-in corpora have their own), a description of their own (first, under the title) and tags (added
    to tinylm's)."""

    license: str = "mit"
    language: str | list[str] | None = None
    datasets: list[str] | None = None
    description: str | None = None
    tags: list[str] | None = None

    def __post_init__(self) -> None:
        if self.tags is not None:
            self.tags = [t for t in (tag.strip() for tag in self.tags) if t]
            bad = [t for t in self.tags if not re.fullmatch(r"[\w.+-]{1,64}", t)]
            if bad:
                raise TinyLMError(f"--tags: {bad[0]!r} is not a Hub tag (letters, digits, - _ . +, comma-separated)")
        if self.description is not None and not self.description.strip():
            raise TinyLMError("--description is empty")


def model_card(run_dir: str | Path, repo_id: str, info: CardInfo | None = None, *, transformers: bool = False,
               files: list[str] | None = None) -> str:
    """README.md for the run in `run_dir` published as `repo_id`: YAML metadata, then the description. `info`:
    what the user adds (CardInfo); `files`: the repo's files, listed in the card (default: what a push of this
    run uploads)."""
    info = info or CardInfo()
    license, language, datasets = info.license, info.language, info.datasets
    hub = _huggingface_hub()
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    config, model = run.config, run.module
    raw = json.loads(run_config_file(run_dir).read_text(encoding="utf-8"))
    family = raw["model"]["family"]
    finetuned = model.wraps_transformers  # the run is a transformers folder: its files all go to the root
    metrics = read_jsonl(run_dir / METRICS)
    if not metrics:
        raise TinyLMError(f"{run_dir} has no metrics.jsonl records: train it for at least one epoch first")
    summary = json.loads((run_dir / SUMMARY).read_text(encoding="utf-8")) \
        if (run_dir / SUMMARY).is_file() else {}
    best = min(metrics, key=lambda r: r["val_loss"])
    title, dataset, corpus_language, own_validation = _corpus(config.data.source)
    datasets = datasets or ([dataset] if dataset else None)
    language = language or corpus_language
    base = summary.get("base_model")
    base_id = _hub_base_model(summary) if finetuned else None
    base_name = base_id or (Path(base).name if base else "a pretrained model")
    if finetuned:
        transformers = True  # the run directory is a transformers model folder
    languages = [language] if isinstance(language, str) else language  # one form, from the CLI or the API
    level, level_tag = TOKENIZER_LEVELS.get(run.tokenizer.kind, (f"{run.tokenizer.kind} tokenizer", None))
    name = repo_id.split("/")[-1]
    model_tag = model.tag()

    scores = [("perplexity", "Validation perplexity", round(best["val_perplexity"], 4)),
              ("loss", "Validation loss (nats/token)", round(best["val_loss"], 5)),
              ("bits_per_character", "Validation bits per character", round(best["val_bits_per_char"], 5))]
    prompt = tc_prompt = config.train.sample_prompt or ""
    card_data = hub.ModelCardData(
        language=languages, license=license, library_name="transformers" if transformers else "tinylm",
        pipeline_tag="text-generation", datasets=datasets, metrics=["perplexity"],
        base_model=base_id, tags=list(dict.fromkeys(t for t in [  # the user's first: they say what it is about
            *(info.tags or []), "tinylm", "text-generation", level_tag, model_tag, "fine-tuned" if finetuned else None,
            "pytorch", "safetensors"] if t)),
        model_name=name,
        # The Hub's inference widget starts from the run's own sample prompt (an empty one is no use there).
        widget=[{"text": tc_prompt or "The"}] if transformers else None,
        eval_results=[hub.EvalResult(task_type="text-generation", task_name="Text generation",
                                     dataset_type=(datasets or ["text"])[0], dataset_name=title,
                                     dataset_split="validation", metric_type=kind, metric_name=label,
                                     metric_value=value)
                      for kind, label, value in scores],
    )

    params = run.num_parameters()
    tc, dc = config.train, config.data
    train_seconds = summary.get("train_seconds", metrics[-1].get("elapsed_seconds"))
    hardware = summary.get("hardware")
    hardware = (f"{hardware} ({summary.get('device')})" if hardware
                else "not recorded (this run has no summary.json)")
    if config.data.val_source:
        validation = f"{_corpus(config.data.val_source)[0]} (--val-data)"
    else:
        validation = own_validation or f"the last {config.data.val_fraction:.0%} of the text"
    if "train_tokens" in summary:
        validation += f"; {summary['train_tokens']:,} training / {summary['val_tokens']:,} validation tokens"

    model_rows = [["architecture", model.describe()], ["family", family], ["parameters", f"{params:,}"],
                  ["vocabulary", f"{run.tokenizer.vocab_size} tokens ({run.tokenizer.kind} tokenizer)"]]
    for field in dataclasses.fields(config.model):
        value = getattr(config.model, field.name)
        # Nested settings (a transformers config) would swamp the table: config.json has them.
        model_rows.append([f"`{field.name}`", f"{len(value)} settings (see config.json)"
                           if isinstance(value, (dict, list)) else value])
    training_rows = [["data", f"{title}; validation: {validation}"]]
    if model.trainable:
        training_rows += [
            ["examples", f"windows of {dc.block_size} tokens every {dc.stride} tokens, target {dc.target}"],
            ["optimizer", f"{tc.optimizer} (betas {', '.join(f'{b:g}' for b in tc.betas)}, "
                          f"weight decay {tc.weight_decay:g}), gradient clipping {tc.grad_clip:g}"],
            ["learning rate", f"{tc.lr:g}, {tc.warmup_steps} warm-up steps, then {tc.lr_schedule}"],
            ["batch", f"{tc.batch_size} windows x {dc.block_size} tokens"],
            ["epochs", _epochs_line(metrics, summary, tc.epochs, best["epoch"])],
            ["early stopping", f"patience {tc.patience}" if tc.patience else "off"],
            ["precision", tc.precision],
        ]
    else:  # counting models (n-grams) have no optimizer: the loop fits them in one pass
        training_rows.append(["training", "one counting pass over the training tokens (no gradient steps)"])
    training_rows += [
        ["training time", f"{train_seconds:,.0f} s" if train_seconds is not None else "not recorded"],
        ["W&B run", _wandb_line(run_dir)],
        ["hardware", hardware],
        ["seed", tc.seed],
        ["tinylm version", raw["tinylm_version"]],
    ]
    epoch_rows = [[r["epoch"], r["step"], "-" if r["train_loss"] is None else f"{r['train_loss']:.4f}",
                   f"{r['val_loss']:.4f}",
                   f"{r['val_perplexity']:.2f}", f"{r['val_bits_per_char']:.3f}", f"{r['tokens_per_s']:,.0f}"]
                  for r in metrics]

    samples = []
    for temperature in CARD_TEMPERATURES:
        text = run.generate(prompt, max_new_tokens=tc.sample_tokens, temperature=temperature, seed=tc.seed)
        fence = _fence(text)
        samples.append(f"**temperature {temperature}**\n\n{fence}text\n{text}\n{fence}")

    usage = [
        f"With tinylm {raw['tinylm_version']} or later installed from its source repository "
        "(`pip install -e '.[hf]'` in a checkout of tinylm; this card was written by tinylm "
        f"{__version__}):",
        "",
        "```bash",
        f"tinylm sample {repo_id} --prompt {shlex.quote(prompt or 'The')} --temperature 0.8 "
        "--max-new-tokens 300",
        "```",
        "",
        "```python",
        "import tinylm",
        "",
        f'model = tinylm.load("{repo_id}")          # downloads once, then loads from the Hugging Face cache',
        f"print(model.generate({json.dumps(prompt)}, max_new_tokens=200, temperature=0.8, seed=1))",
        "```",
    ]
    if transformers:
        start = prompt or "The"
        context = (model.context if model.context < sys.maxsize else None) if finetuned else dc.block_size
        used = len(run.tokenizer.encode(start))
        room = max(1, min(200, context - used) if context else 200)  # learned positions stop at the context
        where = ("the repo is a transformers model folder; tinylm's config is `tinylm_config.json`"
                 if finetuned else "the repo's root is a GPT-2 model; tinylm's config, tokenizer and metadata "
                 "are in `tinylm/`, its weights are the root's")
        usage += [
            "",
            f"With transformers only ({where}):",
            "",
            "```python",
            "from transformers import pipeline",
            "",
            f'generator = pipeline("text-generation", model="{repo_id}")',
            f"print(generator({json.dumps(start)}, max_new_tokens={room}, do_sample=True, "
            f"temperature=0.8)[0][\"generated_text\"])",
            "```",
        ]
        if context:
            usage += ["", f"The model's learned positions allow at most {context} tokens there, prompt "
                          "included: transformers fails past that (tinylm's own generation slides the "
                          "window on)."]

    origin = (f"fine-tuned from {base_name} with tinylm on {title}" if finetuned
              else f"trained from scratch with tinylm on {title}")
    lines = [
        f"# {name}",
        "",
        *([info.description.strip(), ""] if info.description else []),
        f"A {level} language model {origin}: {model.describe()}, "
        f"{params:,} parameters. It continues a text prompt "
        f"{'one character at a time' if run.tokenizer.kind == 'char' else 'one token at a time'}. "
        f"Best validation loss: {best['val_loss']:.4f} nats/token (perplexity {best['val_perplexity']:.2f}, "
        f"{best['val_bits_per_char']:.3f} bits per character) after epoch {best['epoch']}.",
        "",
        "## Model",
        "",
        _table(["", ""], model_rows),
        "",
        "## Training",
        "",
        _table(["", ""], training_rows),
        "",
        "### Validation after each epoch",
        "",
        "The whole validation split is scored after every epoch; bits per character divide the total bits "
        "by the characters of the text, so models with different tokenizers compare fairly.",
        "",
        _table(["epoch", "step", "train loss", "val loss", "val perplexity", "val bits/char", "tokens/s"],
               epoch_rows),
        "",
        "![Training and validation loss per epoch](loss.png)",
        "",
        "## Samples",
        "",
        f"Prompt {json.dumps(prompt)}, {tc.sample_tokens} new tokens, seed {tc.seed} "
        f"(`tinylm sample {repo_id} --prompt {shlex.quote(prompt)} --max-new-tokens {tc.sample_tokens} "
        f"--seed {tc.seed} --temperature T` gives the same text):",
        "",
        "\n\n".join(samples),
        "",
        "## Limitations",
        "",
        *([f"- Fine-tuned from {base_name}: it keeps what that model learned (and its biases) and imitates "
           f"{title}; it follows no instructions and its statements are not facts.",
           f"- The tokenizer is {base_name}'s ({run.tokenizer.vocab_size} tokens)."] if finetuned else
          [f"- A small model trained on {title} only: it imitates the surface of that text (spelling, layout, "
           "style) and produces fluent-looking but mostly meaningless text. It knows no facts and follows no "
           "instructions.",
           f"- The vocabulary is fixed by the training text ({run.tokenizer.vocab_size} tokens); "
           "symbols it never saw are read as `<unk>`."]),
        "- It reproduces whatever the training text holds, including its biases and dated language; do not "
        "use it where its output could be mistaken for a person's or for facts.",
        "- The validation loss is measured on the held-out part of the same corpus; it says little about "
        "other kinds of text.",
        "",
        "## Usage",
        "",
        *usage,
        "",
        "## Files",
        "",
        *[f"- `{file}`: {_file_role(file, finetuned, transformers and not finetuned)}"
          for file in (files or _repo_files(run_dir, raw))],
        "",
    ]
    return f"---\n{card_data.to_yaml()}\n---\n\n" + "\n".join(lines)


def _wandb_line(run_dir: Path) -> str:
    """The card's W&B row: the run's page when it was logged online, else that it was logged offline (or not)."""
    from ..training.loggers import read_wandb_run, wandb_run_folders

    folders = wandb_run_folders(run_dir)
    if not folders:
        return "not logged (train with --logger wandb)"
    urls = [url for url in (read_wandb_run(folder).url for folder in folders) if url]
    if urls:
        return ", ".join(f"[{url.rsplit('/', 1)[-1]}]({url})" for url in urls)
    return "logged offline, not synced (`wandb sync` uploads it)"


def _epochs_line(metrics: list[dict], summary: dict[str, Any], planned: int | None, best_epoch: int) -> str:
    """What training did: full epochs, an epoch cut short by a budget, why it stopped, where the best was."""
    full = len([r for r in metrics if not r.get("partial")])
    done = f"{full} full epoch{'s' if full != 1 else ''}"
    if len(metrics) > full:
        done += " + 1 cut short"
    reason = {"epochs": "all planned epochs done", "early_stopping": "early stopping",
              "time_budget": "time budget reached", "max_steps": "step budget reached"}.get(
                  summary.get("stop_reason"), "stop reason not recorded")
    plan = "" if planned is None else f" of {planned} planned"  # None: a budget, not a count, decided
    return (f"{done}{plan} ({reason}); best at epoch {best_epoch}; "
            f"{metrics[-1]['step']:,} optimizer steps")


_FILE_ROLES = {
    "README.md": "this card",
    LOSS_PLOT: "training and validation loss per epoch",
    TINYLM_CONFIG: "tinylm's run config (data, tokenizer, model and training settings)",
    WEIGHTS: "the best weights (safetensors)",
    "generation_config.json": "transformers' generation defaults",
    "tokenizer.json": "the tokenizer (`tokenizers`; `transformers.AutoTokenizer` loads it)",
    "tokenizer_config.json": "the tokenizer's special tokens and settings",
    "special_tokens_map.json": "the tokenizer's special tokens",
    METRICS: "one record per epoch (losses, perplexity, bits per character, speed)",
    SAMPLES: "the sample written after each epoch",
    SUMMARY: "the run's summary (best epoch, time, hardware)",
}


def _file_role(path: str, finetuned: bool, gpt_export: bool) -> str:
    name = path.rsplit("/", 1)[-1]
    if name == "config.json":
        transformers_config = finetuned or not path.startswith(f"{RUN_SUBFOLDER}/")
        return ("transformers' model config (AutoModelForCausalLM, pipeline)" if transformers_config
                else "tinylm's run config (data, tokenizer, model and training settings)")
    if path == WEIGHTS and gpt_export:
        return ("the best weights (safetensors, GPT-2's layout; the only copy: `tinylm.load` rebuilds tinylm's "
                "from them)")
    return _FILE_ROLES.get(name, "a file of the base model's tokenizer")


def _repo_files(run_dir: Path, config: dict[str, Any]) -> list[str]:
    """The files a push of the run uploads (what _write_repo_folder writes), in the card's order."""
    names = [name for name in RUN_FILES if (run_dir / name).is_file()]
    if _exports_transformers(config):
        export = ["config.json", WEIGHTS, "generation_config.json", "tokenizer.json", "tokenizer_config.json"]
        names = export + [f"{RUN_SUBFOLDER}/{name}" for name in names if name != WEIGHTS]
    return ["README.md", *([LOSS_PLOT] if (run_dir / LOSS_PLOT).is_file() else []), *names]


# -- the folder that is uploaded -----------------------------------------------------------------------
def _check_run(run_dir: Path) -> dict[str, Any]:
    if not run_dir.is_dir():
        raise TinyLMError(f"run directory {run_dir} does not exist")
    missing = [name for name in REQUIRED if not (run_dir / name).is_file()]
    if missing:
        raise TinyLMError(f"{run_dir} is not a trained tinylm run (no {', '.join(missing)})")
    if not is_run(run_dir):
        raise TinyLMError(f"{run_config_file(run_dir)} is not a tinylm run config")
    return json.loads(run_config_file(run_dir).read_text(encoding="utf-8"))


def _write_repo_folder(run_dir: Path, config: dict[str, Any], folder: Path, repo_id: str, info: CardInfo) -> None:
    """Fill the empty (or absent) `folder` with exactly what is uploaded."""
    transformers = _exports_transformers(config)
    files = folder
    if transformers:
        from .export import export_run  # imported here: only GPT runs need it

        export_run(run_dir, folder, format="transformers")
        files = folder / RUN_SUBFOLDER
    files.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        # The weights once: a GPT repo's are GPT-2's at the root, from which tinylm.load rebuilds its own.
        if (run_dir / name).is_file() and not (transformers and name == WEIGHTS):
            shutil.copyfile(run_dir / name, files / name)
    if (run_dir / LOSS_PLOT).is_file():
        shutil.copyfile(run_dir / LOSS_PLOT, folder / LOSS_PLOT)
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    files = ["README.md", *files]  # the card lists exactly what the folder holds
    write_text(folder / "README.md", model_card(run_dir, repo_id, info, transformers=transformers, files=files))


def _write_dry_run(run_dir: Path, config: dict[str, Any], out: Path, repo_id: str, info: CardInfo) -> None:
    """Write the folder into `out`: built beside it, then renamed into place, so `out` is never half-made."""
    if out.resolve() == run_dir.resolve() or run_dir.resolve() in out.resolve().parents:
        raise TinyLMError(f"--dry-run {out} is inside the run {run_dir}; choose a folder outside it")
    from ..folders import check_output, hold, writing_folder

    def check() -> None:
        # Only an empty folder or an earlier dry run's output (a card beside a run) is replaced; never `.`, a
        # parent of the working folder, a mount point or a symbolic link.
        check_output(out, what="an earlier dry run", overwrite=True, flag="--dry-run",
                     is_same_kind=lambda folder: (folder / "README.md").is_file() and is_run(_run_folder(folder)))

    check()
    with hold(out), writing_folder(out) as staging:  # one writer at a time
        check()  # again, now that no other process writes it
        _write_repo_folder(run_dir, config, staging, repo_id, info)


def _network_errors() -> tuple[type[BaseException], ...]:
    """Exceptions of a failed connection: OSError, plus the HTTP client's own (httpx / httpx2 in recent
    huggingface_hub versions do not derive them from OSError)."""
    errors: list[type[BaseException]] = [OSError]
    for module in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(module).TransportError)
        except ImportError:
            pass
    return tuple(errors)


@contextmanager
def _hub_errors(repo_id: str, endpoint: str, action: str, not_found: str) -> Iterator[None]:
    """Turn huggingface_hub's exceptions into one-line TinyLMErrors; `not_found` says a missing repo."""
    from huggingface_hub.utils import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        yield
    except RepositoryNotFoundError:
        raise TinyLMError(f"{not_found} (a private one needs a token: HF_TOKEN or `hf auth login`)") from None
    except RevisionNotFoundError:
        raise TinyLMError(f"{repo_id} on {endpoint} has no such revision") from None
    except OfflineModeIsEnabled:
        raise TinyLMError(f"cannot {action}: HF_HUB_OFFLINE is set; unset it to reach {endpoint}") from None
    except LocalEntryNotFoundError:
        raise TinyLMError(f"cannot {action}: {endpoint} is unreachable (or HF_HUB_OFFLINE is set) and "
                          f"{repo_id} is not in the Hugging Face cache") from None
    except HfHubHTTPError as e:
        status = getattr(e.response, "status_code", None)
        if status in (401, 403):
            raise TinyLMError(f"cannot {action}: {endpoint} refused the token (HTTP {status}); check --token "
                              f"or HF_TOKEN, and its access to {repo_id}") from None
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise TinyLMError(f"cannot {action}: {endpoint} answered HTTP {status}: {first}") from None
    except _network_errors() as e:
        raise TinyLMError(f"cannot {action}: {endpoint} is unreachable ({type(e).__name__}: {e})") from None


def push(run_dir: str | Path, repo_id: str, *, private: bool = False, token: str | None = None,
         dry_run: str | Path | None = None, license: str = "mit",
         language: str | list[str] | None = None, datasets: list[str] | None = None,
         description: str | None = None, tags: list[str] | None = None) -> str:
    """Publish the run in `run_dir` as the model repo `repo_id` (USER/NAME) and return the repo's URL; with
    `dry_run`, write the exact folder that would be uploaded there instead (no network) and return its path.
    `language` and `datasets` (Hub dataset ids) fill the card's metadata (the built-in corpora have their own);
    `description` opens the card, `tags` are added to its tags (the course asks for both).

    The token is `token`, else HF_TOKEN, else the one saved by `hf auth login`. The run directory is only
    read: the upload is built in a temporary folder."""
    run_dir = as_path(run_dir, "run_dir")
    if not isinstance(repo_id, str) or not is_hub_name(repo_id):
        raise TinyLMError(f"--repo {repo_id!r} is not a Hub repo id; use USER/NAME (letters, digits, - _ .)")
    info = CardInfo(license, language, datasets, description, tags)
    config = _check_run(run_dir)
    hub = _huggingface_hub()
    if dry_run is not None:
        _write_dry_run(run_dir, config, as_path(dry_run, "dry_run"), repo_id, info)
        return str(dry_run)
    token = token or hub.get_token()
    if not token:
        raise TinyLMError("no Hugging Face token: pass --token, set HF_TOKEN, or log in with `hf auth login`")
    endpoint = _endpoint()
    api = hub.HfApi(endpoint=endpoint, token=token)
    action, not_found = f"push to {repo_id}", f"cannot push: no model repo {repo_id} on {endpoint}"
    with _hub_errors(repo_id, endpoint, action, not_found):
        # First, so a bad token or an unreachable Hub fails at once, before the card's samples are generated.
        url = api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tinylm-push-") as tmp:
        folder = Path(tmp) / "repo"
        _write_repo_folder(run_dir, config, folder, repo_id, info)
        with _hub_errors(repo_id, endpoint, action, not_found):
            api.upload_folder(repo_id=repo_id, folder_path=str(folder),
                              commit_message=f"Upload tinylm run {run_dir.resolve().name}")
    return str(url)


def read_card(repo_id: str):
    """The model card (a huggingface_hub.ModelCard) of the Hub repo `repo_id`, downloaded (or from the cache)."""
    hub = _huggingface_hub()
    endpoint = _endpoint()
    action, not_found = f"read the model card of {repo_id}", f"no model repo {repo_id} (or no README.md) on {endpoint}"
    with _hub_errors(repo_id, endpoint, action, not_found):
        return hub.ModelCard.load(hub.hf_hub_download(repo_id, "README.md", endpoint=endpoint))


# -- loading from the Hub ------------------------------------------------------------------------------
def download_run(repo_id: str, revision: str | None = None) -> Path:
    """Download the tinylm run of the Hub repo `repo_id` (or find it in the Hugging Face cache) and return
    the local folder holding it, ready for `tinylm.load`. Only the run's files are fetched. A GPT repo's
    tinylm/ holds no weights: they are rebuilt from the root's GPT-2 weights, once per repo and commit, in
    tinylm's cache."""
    hub = _huggingface_hub()
    from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError

    endpoint = _endpoint()

    def fetch(name: str, subfolder: str | None, revision: str | None, required: bool) -> Path | None:
        """The cached file, or None when the repo has no such file and it is not `required`."""
        try:
            return Path(hub.hf_hub_download(repo_id, name, subfolder=subfolder, revision=revision,
                                            endpoint=endpoint))
        # Offline and not cached is not the same as absent (the subclass is caught first).
        except LocalEntryNotFoundError:
            if required:
                raise
            return None
        except EntryNotFoundError:
            if required:
                where = f"{subfolder}/{name}" if subfolder else name
                raise TinyLMError(f"{repo_id} is not a tinylm run: it has no {where}") from None
            return None

    not_found = f"{repo_id} is neither a local run directory nor a model repo on {endpoint}"
    with _hub_errors(repo_id, endpoint, f"load {repo_id}", not_found):
        root_config = fetch("config.json", None, revision, True)
        snapshot = root_config.parent
        # The cache names snapshot folders by commit: the other files are pinned to that commit, so a push
        # landing between two downloads cannot mix two versions of the run.
        commit = snapshot.name
        # tinylm's config is config.json (most runs), tinylm_config.json (fine-tunes), or in tinylm/ (GPT).
        own_config = None if is_run_config(root_config) else fetch(TINYLM_CONFIG, None, commit, False)
        subfolder = None if is_run_config(root_config) or own_config else RUN_SUBFOLDER
        # A GPT repo's tinylm/ has weights only when pushed before they were kept once, at the root.
        found = {name: fetch(name, subfolder, commit, name in REQUIRED and not (subfolder and name == WEIGHTS))
                 for name in RUN_FILES}
        if not subfolder or found[WEIGHTS]:
            return snapshot / subfolder if subfolder else snapshot
        rebuilt = _rebuilt_runs() / "hub" / repo_id.replace("/", "--") / commit
        gpt2_weights = None if (rebuilt / WEIGHTS).is_file() else fetch(WEIGHTS, None, commit, True)
    return _rebuilt_run(gpt2_weights, snapshot / subfolder, rebuilt)
