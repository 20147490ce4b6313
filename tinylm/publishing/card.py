"""The model card (README.md) of a published run: the facts it shows, gathered from the run directory, and the
card built from those facts alone.

    facts = card_facts("runs/lstm", "alice/shakespeare-lstm")  # loads the run, reads its records, samples it
    text = build_card(facts)                                    # formats only: no file reads, no model calls

tinylm.publishing.hub.model_card does both, and push writes the result as the repo's README.md. The repo's
layout that the card lists (RUN_FILES, RUN_SUBFOLDER), the Hub repo id pattern and the huggingface_hub import
live here too: hub.py imports them from this module, which imports nothing of hub.py (no import cycle).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._version import __version__
from ..errors import TinyLMError
from ..io import read_jsonl
from ..loading import LoadedModel, load_run
from ..run.layout import CONFIG, LOSS_PLOT, METRICS, SAMPLES, SUMMARY, TINYLM_CONFIG, WEIGHTS, run_config_file

if TYPE_CHECKING:
    from ..config import DataConfig, TrainConfig

# The run's files a repo carries (those the run has).
RUN_FILES = [CONFIG, TINYLM_CONFIG, WEIGHTS, "generation_config.json", "tokenizer.json",
             "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json",
             "chat_template.jinja", METRICS, SAMPLES, SUMMARY]
RUN_SUBFOLDER = "tinylm"  # where the run's files go when a transformers export takes the root
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


def import_huggingface_hub():
    """The huggingface_hub module, or a one-line TinyLMError saying how to install it."""
    try:
        return importlib.import_module("huggingface_hub")
    except ImportError:
        raise TinyLMError("publishing needs huggingface_hub: pip install huggingface_hub "
                          "(or pip install 'tinylm[hf]')") from None


def _exports_transformers(config: dict[str, Any]) -> bool:
    """Whether the run is published in the transformers format as well (GPT runs)."""
    from ..models import FAMILIES

    family = FAMILIES.get(config["model"].get("family"))
    return family is not None and family.model.exports_to_transformers


def _hub_base_model(summary: dict[str, Any]) -> str | None:
    """The Hub id a fine-tune started from (`base_model:` of the card), None for a local folder or run."""
    return summary.get("base_model_id")


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
        """Normalise the tags and refuse ones the Hub would not take, and an empty description."""
        if self.tags is not None:
            self.tags = [t for t in (tag.strip() for tag in self.tags) if t]
            bad = [t for t in self.tags if not re.fullmatch(r"[\w.+-]{1,64}", t)]
            if bad:
                raise TinyLMError(f"--tags: {bad[0]!r} is not a Hub tag (letters, digits, - _ . +, comma-separated)")
        if self.description is not None and not self.description.strip():
            raise TinyLMError("--description is empty")


@dataclass
class CardFacts:
    """Every fact the model card shows. card_facts gathers them from a run; build_card reads nothing else."""

    # The repo, and what the user adds (CardInfo, with the corpus' own language and dataset filled in).
    repo_id: str
    license: str
    languages: list[str] | None
    datasets: list[str] | None  # Hub dataset ids
    description: str | None
    user_tags: list[str]  # listed before tinylm's own
    transformers: bool  # the repo is a transformers model too (GPT export) or only (a fine-tune)
    files: list[str]  # the repo's files, in the card's order
    # The model.
    finetuned: bool
    base_id: str | None  # the Hub id a fine-tune started from
    base_name: str  # how the card names that base
    family: str
    architecture: str  # the model's one-line description
    model_tag: str
    parameters: int
    model_settings: list[tuple[str, Any]]  # the model config's fields and values
    trainable: bool  # False: a counting model (n-grams), fitted in one pass
    tokenizer_kind: str
    vocab_size: int
    # The data and the training.
    corpus: str  # the training text's title
    own_validation: str | None  # the corpus' own validation text, when it has one
    val_corpus: str | None  # the --val-data title; None: validation came from the training text
    data: DataConfig
    train: TrainConfig
    metrics: list[dict[str, Any]]  # metrics.jsonl: one record per epoch
    summary: dict[str, Any]  # summary.json ({} when the run has none)
    wandb_urls: list[str] | None  # None: not logged to W&B; []: logged offline only
    run_version: str  # the tinylm version that trained the run
    card_version: str  # the tinylm version that writes the card
    # What the run wrote: (temperature, text) per card temperature, and what transformers' usage may ask for.
    samples: list[tuple[float, str]]
    context: int | None = None  # the most tokens transformers may generate within (None: no limit)
    prompt_tokens: int | None = None  # the tokens of the usage example's prompt

    @property
    def name(self) -> str:
        """The card's title: the repo's name without its owner."""
        return self.repo_id.split("/")[-1]

    @property
    def best(self) -> dict[str, Any]:
        """The metrics record of the epoch with the lowest validation loss (the weights published)."""
        return min(self.metrics, key=lambda r: r["val_loss"])

    @property
    def prompt(self) -> str:
        """The run's sample prompt ("" when it samples from nothing)."""
        return self.train.sample_prompt or ""


# -- gathering the facts (reads the run, generates the samples) -------------------------------------------
def card_facts(run_dir: str | Path, repo_id: str, info: CardInfo | None = None, *, transformers: bool = False,
               files: list[str] | None = None) -> CardFacts:
    """The facts of the card of the run in `run_dir` published as `repo_id`: loads the run, reads its config,
    metrics and summary, and generates the samples. `info`, `transformers` and `files` as in model_card."""
    info = info or CardInfo()
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    config, model = run.config, run.module
    raw = json.loads(run_config_file(run_dir).read_text(encoding="utf-8"))
    metrics = read_jsonl(run_dir / METRICS)
    if not metrics:
        raise TinyLMError(f"{run_dir} has no metrics.jsonl records: train it for at least one epoch first")
    summary = json.loads((run_dir / SUMMARY).read_text(encoding="utf-8")) \
        if (run_dir / SUMMARY).is_file() else {}
    finetuned = model.wraps_transformers  # the run is a transformers folder: its files all go to the root
    transformers = transformers or finetuned
    title, dataset, corpus_language, own_validation = _corpus(config.data.source)
    language = info.language or corpus_language
    base = summary.get("base_model")
    base_id = _hub_base_model(summary) if finetuned else None
    context, prompt_tokens = _usage_limits(run, finetuned) if transformers else (None, None)
    return CardFacts(
        repo_id=repo_id, license=info.license,
        languages=[language] if isinstance(language, str) else language,  # one form, from the CLI or the API
        datasets=info.datasets or ([dataset] if dataset else None), description=info.description,
        user_tags=info.tags or [], transformers=transformers, files=files or _repo_files(run_dir, raw),
        finetuned=finetuned, base_id=base_id, base_name=base_id or (Path(base).name if base else "a pretrained model"),
        family=raw["model"]["family"], architecture=model.describe(), model_tag=model.tag(),
        parameters=run.num_parameters(),
        model_settings=[(f.name, getattr(config.model, f.name)) for f in dataclasses.fields(config.model)],
        trainable=model.trainable, tokenizer_kind=run.tokenizer.kind, vocab_size=run.tokenizer.vocab_size,
        corpus=title, own_validation=own_validation,
        val_corpus=_corpus(config.data.val_source)[0] if config.data.val_source else None,
        data=config.data, train=config.train, metrics=metrics, summary=summary, wandb_urls=_wandb_urls(run_dir),
        run_version=raw["tinylm_version"], card_version=__version__, samples=_samples(run),
        context=context, prompt_tokens=prompt_tokens)


def _samples(run: LoadedModel) -> list[tuple[float, str]]:
    """(temperature, text) at each card temperature, from the run's sample prompt, length and seed (the command
    the card shows gives the same texts)."""
    tc = run.config.train
    return [(t, run.generate(tc.sample_prompt or "", max_new_tokens=tc.sample_tokens, temperature=t, seed=tc.seed))
            for t in CARD_TEMPERATURES]


def _usage_limits(run: LoadedModel, finetuned: bool) -> tuple[int | None, int]:
    """(the context transformers' generation must fit in, None for none; the tokens of the usage example's
    prompt). A fine-tune's context is its base model's; a GPT's, the block size its positions were learned for."""
    model = run.module
    context = (model.context if model.context < sys.maxsize else None) if finetuned else run.config.data.block_size
    return context, len(run.tokenizer.encode(run.config.train.sample_prompt or "The"))


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


def _wandb_urls(run_dir: Path) -> list[str] | None:
    """The pages of the run's W&B runs logged online: None when it was not logged to W&B, [] when only offline."""
    from ..run.loggers import read_wandb_run, wandb_run_folders

    folders = wandb_run_folders(run_dir)
    if not folders:
        return None
    return [url for url in (read_wandb_run(folder).url for folder in folders) if url]


def _repo_files(run_dir: Path, config: dict[str, Any]) -> list[str]:
    """The files a push of the run uploads (what hub._write_repo_folder writes), in the card's order."""
    names = [name for name in RUN_FILES if (run_dir / name).is_file()]
    if _exports_transformers(config):
        export = ["config.json", WEIGHTS, "generation_config.json", "tokenizer.json", "tokenizer_config.json"]
        names = export + [f"{RUN_SUBFOLDER}/{name}" for name in names if name != WEIGHTS]
    return ["README.md", *([LOSS_PLOT] if (run_dir / LOSS_PLOT).is_file() else []), *names]


# -- building the card from the facts (formatting only) ----------------------------------------------------
def build_card(facts: CardFacts) -> str:
    """The model card from `facts` alone: the YAML metadata between --- lines, then the description's sections."""
    sections = [_intro(facts), _model_section(facts), _training_section(facts), _epochs_section(facts),
                _samples_section(facts), _limitations_section(facts), _usage_section(facts), _files_section(facts)]
    return f"---\n{_metadata(facts)}\n---\n\n" + "\n".join(line for section in sections for line in section)


def _metadata(facts: CardFacts) -> str:
    """The card's YAML metadata (huggingface_hub's ModelCardData): licence, languages, datasets, tags, the
    inference widget and the model-index with the best epoch's validation scores."""
    hub = import_huggingface_hub()
    best = facts.best
    scores = [("perplexity", "Validation perplexity", round(best["val_perplexity"], 4)),
              ("loss", "Validation loss (nats/token)", round(best["val_loss"], 5)),
              ("bits_per_character", "Validation bits per character", round(best["val_bits_per_char"], 5))]
    card_data = hub.ModelCardData(
        language=facts.languages, license=facts.license,
        library_name="transformers" if facts.transformers else "tinylm",
        pipeline_tag="text-generation", datasets=facts.datasets, metrics=["perplexity"],
        base_model=facts.base_id, tags=list(dict.fromkeys(t for t in [  # the user's first: they say what it is about
            *facts.user_tags, "tinylm", "text-generation", _level(facts)[1], facts.model_tag,
            "fine-tuned" if facts.finetuned else None, *(["lora", "peft"] if _lora(facts) else []), "pytorch",
            "safetensors"] if t)),
        model_name=facts.name,
        # The Hub's inference widget starts from the run's own sample prompt (an empty one is no use there).
        widget=[{"text": facts.prompt or "The"}] if facts.transformers else None,
        eval_results=[hub.EvalResult(task_type="text-generation", task_name="Text generation",
                                     dataset_type=(facts.datasets or ["text"])[0], dataset_name=facts.corpus,
                                     dataset_split="validation", metric_type=kind, metric_name=label,
                                     metric_value=value)
                      for kind, label, value in scores],
    )
    return card_data.to_yaml()


def _level(facts: CardFacts) -> tuple[str, str | None]:
    """(how the card names the tokenizer's level, its tag; None for none)."""
    kind = facts.tokenizer_kind
    return TOKENIZER_LEVELS.get(kind, (f"{kind} tokenizer", None))


def _intro(facts: CardFacts) -> list[str]:
    """The title, the user's description, and one paragraph: what the model is and its best scores."""
    best, lora = facts.best, _lora(facts)
    method = f" by LoRA ({_lora_text(lora)}: {_trained(facts)} trained, then merged into the weights)" if lora else ""
    origin = (f"fine-tuned from {facts.base_name} with tinylm on {facts.corpus}{method}" if facts.finetuned
              else f"trained from scratch with tinylm on {facts.corpus}")
    return [
        f"# {facts.name}",
        "",
        *([facts.description.strip(), ""] if facts.description else []),
        f"A {_level(facts)[0]} language model {origin}: {facts.architecture}, "
        f"{facts.parameters:,} parameters. It continues a text prompt "
        f"{'one character at a time' if facts.tokenizer_kind == 'char' else 'one token at a time'}. "
        f"Best validation loss: {best['val_loss']:.4f} nats/token (perplexity {best['val_perplexity']:.2f}, "
        f"{best['val_bits_per_char']:.3f} bits per character) after epoch {best['epoch']}.",
        "",
    ]


def _model_section(facts: CardFacts) -> list[str]:
    """## Model: the architecture, size and vocabulary, then each model setting."""
    rows = [["architecture", facts.architecture], ["family", facts.family], ["parameters", f"{facts.parameters:,}"],
            ["vocabulary", f"{facts.vocab_size} tokens ({facts.tokenizer_kind} tokenizer)"]]
    # Nested settings (a transformers config) would swamp the table: config.json has them.
    rows += [[f"`{name}`", f"{len(value)} settings (see config.json)" if isinstance(value, (dict, list)) else value]
             for name, value in facts.model_settings]
    return ["## Model", "", markdown_table(["", ""], rows), ""]


def _training_section(facts: CardFacts) -> list[str]:
    """## Training: the data, the optimisation (or the counting pass), time, W&B run, hardware, seed, version."""
    tc, dc, summary = facts.train, facts.data, facts.summary
    rows = [["data", f"{facts.corpus}; validation: {_validation(facts)}"]]
    if facts.trainable:
        rows += [
            ["examples", f"windows of {dc.block_size} tokens every {dc.stride} tokens, target {dc.target}"],
            ["optimizer", f"{tc.optimizer} (betas {', '.join(f'{b:g}' for b in tc.betas)}, "
                          f"weight decay {tc.weight_decay:g}), gradient clipping {tc.grad_clip:g}"],
            ["learning rate", f"{tc.lr:g}, {tc.warmup_steps} warm-up steps, then {tc.lr_schedule}"],
            ["batch", f"{tc.batch_size} windows x {dc.block_size} tokens"],
            ["epochs", _epochs_line(facts.metrics, summary, tc.epochs, facts.best["epoch"])],
            ["early stopping", f"patience {tc.patience}" if tc.patience else "off"],
            ["precision", tc.precision],
        ]
        lora = _lora(facts)
        if lora:  # a LoRA fine-tune: only the adapter trained, from the base named here
            rows.append(["LoRA", f"{_lora_text(lora)}, dropout {lora.get('dropout')}: {_trained(facts)} trained, "
                                 f"the base's {facts.summary.get('parameters', facts.parameters):,} frozen; the "
                                 f"adapter is merged into {WEIGHTS}"])
    else:  # counting models (n-grams) have no optimizer: the loop fits them in one pass
        rows.append(["training", "one counting pass over the training tokens (no gradient steps)"])
    train_seconds = summary.get("train_seconds", facts.metrics[-1].get("elapsed_seconds"))
    hardware = summary.get("hardware")
    rows += [
        ["training time", f"{train_seconds:,.0f} s" if train_seconds is not None else "not recorded"],
        ["W&B run", _wandb_line(facts.wandb_urls)],
        ["hardware", f"{hardware} ({summary.get('device')})" if hardware
         else "not recorded (this run has no summary.json)"],
        ["seed", tc.seed],
        ["tinylm version", facts.run_version],
    ]
    return ["## Training", "", markdown_table(["", ""], rows), ""]


def _validation(facts: CardFacts) -> str:
    """Where the validation text came from, and the token counts of both splits when the run recorded them."""
    if facts.val_corpus is not None:
        validation = f"{facts.val_corpus} (--val-data)"
    else:
        validation = facts.own_validation or f"the last {facts.data.val_fraction:.0%} of the text"
    if "train_tokens" in facts.summary:
        validation += (f"; {facts.summary['train_tokens']:,} training / {facts.summary['val_tokens']:,} "
                       "validation tokens")
    return validation


def _epochs_section(facts: CardFacts) -> list[str]:
    """### Validation after each epoch: one row per metrics record, then the loss plot."""
    rows = [[r["epoch"], r["step"], "-" if r["train_loss"] is None else f"{r['train_loss']:.4f}",
             f"{r['val_loss']:.4f}",
             f"{r['val_perplexity']:.2f}", f"{r['val_bits_per_char']:.3f}", f"{r['tokens_per_s']:,.0f}"]
            for r in facts.metrics]
    return [
        "### Validation after each epoch",
        "",
        "The whole validation split is scored after every epoch; bits per character divide the total bits "
        "by the characters of the text, so models with different tokenizers compare fairly.",
        "",
        markdown_table(["epoch", "step", "train loss", "val loss", "val perplexity", "val bits/char", "tokens/s"],
                       rows),
        "",
        "![Training and validation loss per epoch](loss.png)",
        "",
    ]


def _samples_section(facts: CardFacts) -> list[str]:
    """## Samples: the command that gives them, then each temperature's text in its own fence."""
    tc, prompt = facts.train, facts.prompt
    samples = []
    for temperature, text in facts.samples:
        fence = _fence(text)
        samples.append(f"**temperature {temperature}**\n\n{fence}text\n{text}\n{fence}")
    return [
        "## Samples",
        "",
        f"Prompt {json.dumps(prompt)}, {tc.sample_tokens} new tokens, seed {tc.seed} "
        f"(`tinylm sample {facts.repo_id} --prompt {shlex.quote(prompt)} --max-new-tokens {tc.sample_tokens} "
        f"--seed {tc.seed} --temperature T` gives the same text):",
        "",
        "\n\n".join(samples),
        "",
    ]


def _limitations_section(facts: CardFacts) -> list[str]:
    """## Limitations: what the model is not (a fine-tune's differ from a model trained from scratch)."""
    base, corpus, vocab = facts.base_name, facts.corpus, facts.vocab_size
    if facts.finetuned:
        own = [f"- Fine-tuned from {base}: it keeps what that model learned (and its biases) and imitates "
               f"{corpus}; it follows no instructions and its statements are not facts.",
               f"- The tokenizer is {base}'s ({vocab} tokens)."]
    else:
        own = [f"- A small model trained on {corpus} only: it imitates the surface of that text (spelling, layout, "
               "style) and produces fluent-looking but mostly meaningless text. It knows no facts and follows no "
               "instructions.",
               f"- The vocabulary is fixed by the training text ({vocab} tokens); "
               "symbols it never saw are read as `<unk>`."]
    return [
        "## Limitations",
        "",
        *own,
        "- It reproduces whatever the training text holds, including its biases and dated language; do not "
        "use it where its output could be mistaken for a person's or for facts.",
        "- The validation loss is measured on the held-out part of the same corpus; it says little about "
        "other kinds of text.",
        "",
    ]


def _usage_section(facts: CardFacts) -> list[str]:
    """## Usage: sampling with tinylm's CLI and Python API, then with transformers when the repo allows it."""
    prompt, repo_id = facts.prompt, facts.repo_id
    usage = [
        f"With tinylm {facts.run_version} or later installed from its source repository "
        "(`pip install -e '.[hf]'` in a checkout of tinylm; this card was written by tinylm "
        f"{facts.card_version}):",
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
    if facts.transformers:
        usage += _transformers_usage(facts)
    return ["## Usage", "", *usage, ""]


def _transformers_usage(facts: CardFacts) -> list[str]:
    """Sampling with transformers' pipeline alone, held within the model's learned positions."""
    start, context = facts.prompt or "The", facts.context
    room = max(1, min(200, context - facts.prompt_tokens) if context else 200)  # learned positions stop there
    where = ("the repo is a transformers model folder; tinylm's config is `tinylm_config.json`"
             if facts.finetuned else "the repo's root is a GPT-2 model; tinylm's config, tokenizer and metadata "
             "are in `tinylm/`, its weights are the root's")
    usage = [
        "",
        f"With transformers only ({where}):",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'generator = pipeline("text-generation", model="{facts.repo_id}")',
        f"print(generator({json.dumps(start)}, max_new_tokens={room}, do_sample=True, "
        f"temperature=0.8)[0][\"generated_text\"])",
        "```",
    ]
    if context:
        usage += ["", f"The model's learned positions allow at most {context} tokens there, prompt "
                      "included: transformers fails past that (tinylm's own generation slides the "
                      "window on)."]
    return usage


def _files_section(facts: CardFacts) -> list[str]:
    """## Files: each file of the repo and what it holds."""
    gpt_export = facts.transformers and not facts.finetuned
    listed = [f"- `{file}`: {_file_role(file, facts.finetuned, gpt_export)}" for file in facts.files]
    return ["## Files", "", *listed, ""]


# -- the card's small formatters --------------------------------------------------------------------------
def _lora(facts: CardFacts) -> dict[str, Any] | None:
    """The LoRA adapter a fine-tune trained (summary.json's `lora`: rank, alpha, dropout, targets, layers), None
    for a full fine-tune or a run trained from scratch."""
    lora = facts.summary.get("lora") if facts.finetuned else None
    return lora if isinstance(lora, dict) else None


def _lora_text(lora: dict[str, Any]) -> str:
    """The adapter's settings as the card names them: "rank 8, alpha 16 on c_attn"."""
    return f"rank {lora.get('rank')}, alpha {lora.get('alpha')} on {', '.join(map(str, lora.get('targets', [])))}"


def _trained(facts: CardFacts) -> str:
    """The parameters a LoRA fine-tune trained, as a number when the run recorded it."""
    trainable = facts.summary.get("trainable_parameters")
    return f"{trainable:,} parameters" if isinstance(trainable, int) else "the adapter's parameters"


def _fence(text: str) -> str:
    """A Markdown code fence longer than any run of backticks in `text`, so samples cannot break out."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def markdown_table(header: list[str], rows: list[list[Any]]) -> str:
    """A Markdown table of `rows` under `header`."""
    def cell(value: Any) -> str:
        """One cell's text: its | escaped and its line breaks made spaces, so it cannot split the table."""
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _wandb_line(urls: list[str] | None) -> str:
    """The card's W&B row: the run's page when it was logged online, else that it was logged offline (or not)."""
    if urls is None:
        return "not logged (train with --logger wandb)"
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
    """What the repo's file `path` holds, as the card's file list says it."""
    name = path.rsplit("/", 1)[-1]
    if name == "config.json":
        transformers_config = finetuned or not path.startswith(f"{RUN_SUBFOLDER}/")
        return ("transformers' model config (AutoModelForCausalLM, pipeline)" if transformers_config
                else "tinylm's run config (data, tokenizer, model and training settings)")
    if path == WEIGHTS and gpt_export:
        return ("the best weights (safetensors, GPT-2's layout; the only copy: `tinylm.load` rebuilds tinylm's "
                "from them)")
    return _FILE_ROLES.get(name, "a file of the base model's tokenizer")
