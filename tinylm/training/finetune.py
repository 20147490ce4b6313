"""Fine-tune a pretrained causal language model with the Hugging Face Trainer; the result is a tinylm run.

    run = tinylm.finetune("gpt2", "shakespeare", out="runs/gpt2-shakespeare",
                          config=tinylm.FinetuneConfig(epochs=3, lr=5e-5))
    print(run.generate("ROMEO:", temperature=0.8))

The base is a Hub name (downloaded to the HF cache when online), a local transformers folder, or a tinylm
run (a GPT run is exported to the transformers format on the fly; an earlier fine-tune run is used as is).
The text comes from tinylm's own data stage (`load_split`: the sources and the train/validation split of
`tinylm train`) and is tokenized with the base's tokenizer: cut into blocks, or one example per line
(`lines`) framed by the end-of-text token. This is the one place tinylm uses transformers' `Trainer`:
the best checkpoint kept, early stopping, bf16 on GPUs that support it. The validation after each epoch is
tinylm's own evaluation (the numbers `tinylm eval RUN` prints), and what is logged goes through tinylm's
loggers (`--logger csv|tensorboard|wandb`) under the keys `tinylm train` uses.

The run directory is a transformers model folder and a tinylm run at once:

    config.json, generation_config.json, model.safetensors   as save_pretrained writes them, so
        `pipeline("text-generation", model=RUN)` and `AutoModelForCausalLM.from_pretrained(RUN)` load it
    tokenizer.json, tokenizer_config.json (+ the base's other tokenizer files)   AutoTokenizer and tinylm
    tinylm_config.json   tinylm's run config (data, tokenizer, model family "hf", training settings)
    metrics.jsonl, samples.jsonl, loss.png, summary.json   as every run has

so `tinylm sample`, `eval`, `push` and `serve` treat it like any other (RunConfig.load reads
tinylm_config.json when it is there; runs of earlier versions, with tinylm's config as config.json and
weights prefixed `model.`, still load). summary.json adds the base model and the validation perplexity
before and after fine-tuning.

With `lora` (peft), the base stays frozen and only low-rank adapters train. The run then holds the best
epoch's adapter in adapter/ (adapter_config.json, adapter_model.safetensors: `PeftModel.from_pretrained(base,
RUN/adapter)`) and, where a full fine-tune keeps its weights, the base with that adapter merged in, so
everything downstream reads a LoRA run as it reads any fine-tune. summary.json records the adapter's settings.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tokenizers
import torch

from ..config import LOGGER_NAMES, DataConfig, RunConfig, TrainConfig, check_learning_rate
from ..data import IGNORE, load_split
from ..errors import TinyLMError, check_types
from ..folders import check_apart
from ..io import as_path, atomic_path, read_jsonl, write_json, write_text
from ..loading import LoadedModel, load_run
from ..machine.devices import MachineChoice, check_training_precision, resolve_device, settle_machine
from ..models import family_of
from ..models.hf import HFCausalLM, HFCausalLMConfig, hf_config_dict
from ..models.weights import load_weights
from ..publishing.hub import is_hub_name
from ..run.layout import (
    ADAPTER,
    CONFIG,
    METRICS,
    TINYLM_CONFIG,
    WEIGHTS,
    check_run_output,
    default_run_dir,
    default_sample_prompt,
    is_run,
)
from ..run.session import RunSession
from ..tokenizers import Tokenizer, TokenizerConfig
from .budget import EARLY_STOPPING, PLANNED_EPOCHS

Echo = Callable[[str], None]

TRAINER_DIR = "trainer"  # the Trainer's checkpoints inside the run directory, removed when training ends


@dataclass
class FinetuneConfig:
    """How the base model is fine-tuned. The text source and its split come from the `data` argument."""

    epochs: int = 3
    """Passes over the training blocks (fewer when early stopping ends the run)."""
    lr: float = 5e-5
    """Peak learning rate (AdamW; cosine decay to a tenth of it)."""
    batch_size: int = 8
    """Blocks per optimizer step (also the evaluation batch)."""
    block_size: int | None = None
    """Tokens per training block; default: 128, or the base model's context when it is shorter."""
    lines: bool = False
    """One example per non-empty line, framed by the end-of-text token, instead of blocks of the text."""
    patience: int = 2
    """Stop after this many epochs without a better validation loss (0 disables early stopping)."""
    warmup_steps: int = 0
    """Optimizer steps over which the learning rate rises linearly to `lr` at the start."""
    weight_decay: float = 0.0
    """AdamW's decoupled weight decay."""
    seed: int = 1337
    """Seed of the Trainer (batch order, dropout) and of the samples."""
    logger: str = "none"
    """none, csv, tensorboard or wandb: tinylm's loggers, with the keys `tinylm train` logs."""
    wandb_project: str | None = None
    """W&B project (default: tinylm)."""
    run_name: str | None = None
    """Name of the run in the tracker (default: the run directory's name)."""
    sample_prompt: str | None = None
    """Prompt of the sample written after each epoch (default: the start of the text; empty in line mode)."""
    sample_tokens: int = 100
    """Tokens generated for the sample written after each epoch."""
    device: str = "auto"
    """auto (CUDA, then Apple MPS, then the CPU), cpu, cuda or mps (tinylm/machine/devices.py)."""
    precision: str = "auto"
    """auto, bf16 or fp32: the same rule as `tinylm train` (bf16 on GPUs that support it, and on CPUs that
    compute bf16 natively where a probe step of the model is faster)."""
    threads: int | None = None
    """CPU threads for torch (default: as the process has them)."""
    lora: bool = False
    """Train LoRA adapters (peft) instead of every weight. The base stays frozen; the run keeps the adapter
    (adapter/) and the base with the adapter merged in."""
    lora_rank: int = 8
    """Rank of each LoRA update (with --lora)."""
    lora_alpha: int = 16
    """LoRA's scale numerator: an update is scaled by alpha / rank (with --lora)."""
    lora_targets: list[str] | None = None
    """Names of the modules that get adapters (default: peft's choice for the architecture; GPT-2: c_attn)."""
    lora_dropout: float = 0.05
    """Dropout on the adapters' input during training (with --lora)."""

    def __post_init__(self) -> None:
        check_types(self)
        if self.epochs < 1:
            raise TinyLMError(f"--epochs must be at least 1, got {self.epochs}")
        check_learning_rate(self.lr)
        if self.batch_size < 1:
            raise TinyLMError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.block_size is not None and self.block_size < 2:  # a token and the one it predicts
            raise TinyLMError(f"--block-size must be at least 2, got {self.block_size}")
        if min(self.patience, self.warmup_steps, self.sample_tokens) < 0:
            raise TinyLMError("--patience, --warmup-steps and --sample-tokens must not be negative")
        if self.logger not in LOGGER_NAMES:
            raise TinyLMError(f"unknown logger {self.logger!r}; choose one of {', '.join(LOGGER_NAMES)}")
        check_training_precision(self.precision)
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise TinyLMError(f"--threads must be a whole number >= 1, got {self.threads!r}")
        self._check_lora()

    def _check_lora(self) -> None:
        """The adapter's settings within their ranges, and none set without `lora` (a forgotten --lora would
        otherwise train every weight while the user believes an adapter is trained)."""
        if self.lora_rank < 1:
            raise TinyLMError(f"--lora-rank must be at least 1, got {self.lora_rank}")
        if self.lora_alpha <= 0:
            raise TinyLMError(f"--lora-alpha must be positive, got {self.lora_alpha}")
        if not (math.isfinite(self.lora_dropout) and 0 <= self.lora_dropout < 1):
            raise TinyLMError(f"--lora-dropout must be in [0, 1), got {self.lora_dropout}")
        if self.lora_targets is not None:
            self.lora_targets = list(dict.fromkeys(name.strip() for name in self.lora_targets))
            if not self.lora_targets or not all(self.lora_targets):
                raise TinyLMError("--lora-targets needs module names, comma-separated (e.g. c_attn,c_proj)")
        defaults = {field.name: field.default for field in dataclasses.fields(self)}
        changed = [name for name in ("lora_rank", "lora_alpha", "lora_targets", "lora_dropout")
                   if getattr(self, name) != defaults[name]]
        if changed and not self.lora:
            flags = ", ".join("--" + name.replace("_", "-") for name in changed)
            raise TinyLMError(f"{flags} set the LoRA adapter: add --lora (or leave them out)")


def finetune(base: str | Path, data: str | Path | DataConfig, out: str | Path | None = None,
             config: FinetuneConfig | None = None, *, overwrite: bool = False, progress: bool = True,
             echo: Echo = print) -> LoadedModel:
    """Fine-tune `base` on `data` into the run directory `out` (default runs/<data>-<base>-<time>) and return
    the best model. `data` is a source (file, folder, built-in corpus, hf:NAME) or a DataConfig for its split
    options; the block size and line mode come from `config`."""
    config = config if config is not None else FinetuneConfig()
    if not isinstance(config, FinetuneConfig):
        raise TinyLMError(f"config must be a tinylm.FinetuneConfig, got {type(config).__name__}")
    as_path(base, "base")  # a folder or a Hub id, given as a str or a Path
    base = os.fspath(base)  # as written: "./folder" is a folder, "org/name" a Hub id
    run_dir = as_path(out, "out") if out is not None else None
    device = resolve_device(config.device)  # a device that isn't there fails before anything is read or written
    data = data if isinstance(data, DataConfig) else DataConfig(source=str(as_path(data, "data")))
    if run_dir is not None:
        check_apart(run_dir, base, "--out", "--base")  # the base is read: never written into or replaced
    if config.lora:
        import peft  # noqa: F401  (tinylm[lora]: a missing peft stops the run before anything is read)
    train_text, val_text = load_split(data)  # fail on bad data before loading a large model
    hf_model, hf_tokenizer = _load_base(base)
    tokenizer = _tinylm_tokenizer(hf_tokenizer)
    module = HFCausalLM(HFCausalLMConfig(tokenizer.vocab_size, hf_config_dict(hf_model.config)), hf_model)
    block_size, train_examples, val_examples = _examples(base, data, config, tokenizer, module, train_text, val_text)
    lora = _add_lora(hf_model, config, base) if config.lora else None  # changes hf_model's layers in place

    run_dir = run_dir if run_dir is not None else default_run_dir(data.source, base)
    check_run_output(run_dir, overwrite, resumable=False)
    session = RunSession(run_dir, _run_config(data, block_size, config, tokenizer, module, train_text), echo=echo)

    def write_start(folder: Path) -> None:  # the run appears whole (configs + tokenizer) or not at all
        session.config.save(folder / TINYLM_CONFIG)
        hf_model.config.save_pretrained(folder)  # config.json (transformers'); the weights after epoch 1
        _save_tokenizer(hf_tokenizer, tokenizer, folder)

    with session.open_new(overwrite, write_start, resumable=False):  # held: a second writer is refused
        try:
            return _train(session, config, base, module, lora, tokenizer, train_examples, val_examples, val_text,
                          device, progress)
        finally:
            shutil.rmtree(run_dir / TRAINER_DIR, ignore_errors=True)  # the Trainer's own checkpoints


def _examples(base: str, data: DataConfig, config: FinetuneConfig, tokenizer: Tokenizer, module: HFCausalLM,
              train_text: str, val_text: str) -> tuple[int, list, list]:
    """(block size, training examples, validation examples): blocks of the text, or framed lines."""
    block_size = config.block_size or min(128, module.context)
    if block_size > module.context:
        raise TinyLMError(f"--block-size {block_size} is longer than the context of {base} "
                          f"({module.context} tokens)")
    if config.lines and tokenizer.eos_id is None:
        raise TinyLMError(f"--lines needs an end-of-text token, and the tokenizer of {base} has none")
    make_examples = _line_examples if config.lines else _text_blocks
    train_examples = make_examples(tokenizer, train_text, block_size)
    val_examples = make_examples(tokenizer, val_text, block_size)
    if not train_examples or not val_examples:
        split = "training" if not train_examples else "validation"
        raise TinyLMError(f"the {split} text of {data.source!r} has fewer than 2 tokens: nothing to learn")
    return block_size, train_examples, val_examples


def _train(session: RunSession, config: FinetuneConfig, base: str, module: HFCausalLM, lora: _Lora | None,
           tokenizer: Tokenizer, train_examples: list, val_examples: list, val_text: str, device: torch.device,
           progress: bool) -> LoadedModel:
    """Settle the machine, start the session, let the Trainer train (its callback reports each epoch to the
    session), reload the best epoch and finish the session."""
    run_config, run_dir = session.config, session.run_dir
    steps_per_epoch = math.ceil(len(train_examples) / config.batch_size)
    machine = settle_machine(device, config.precision, config.threads, module.to(device),
                             lambda: _probe_batch(train_examples, config.batch_size, device))
    run_config.train.precision = machine.precision.name
    trainer = _make_trainer(session, config, module, lora, tokenizer, train_examples, val_examples, val_text,
                            steps_per_epoch, progress, machine)
    run = LoadedModel(module.to(device), tokenizer, run_config, run_dir, device)
    train_tokens, val_tokens = (_targets(examples) for examples in (train_examples, val_examples))
    trainable, parameters = _parameter_counts(module)
    parameters -= trainable if lora else 0  # the model that is published: the base's size, the adapter merged
    model_row = f"{module.describe()}: {parameters:,} parameters" + (", frozen" if lora else "")
    session.start(f"tinylm finetune {base} -> {run_dir}", [
        ("data", f"{run_config.data.source}: {train_tokens:,} training / {val_tokens:,} validation targets in "
                 f"{len(train_examples):,} / {len(val_examples):,} {'lines' if config.lines else 'blocks'} of at "
                 f"most {run_config.data.block_size} tokens (vocabulary {tokenizer.vocab_size})"),
        ("model", model_row),
        *([("lora", lora.describe(trainable, parameters))] if lora else []),
        ("training", f"{config.epochs} epochs x {steps_per_epoch:,} steps (batch {config.batch_size}); adamw lr "
                     f"{config.lr:g} cosine, warm-up {config.warmup_steps}, patience {config.patience or 'off'}"),
    ], {"base_model": base, "base_model_id": _hub_id(base), "parameters": parameters,
        "trainable_parameters": trainable, **({"lora": lora.facts()} if lora else {}),
        "train_tokens": train_tokens, "val_tokens": val_tokens, "steps_per_epoch": steps_per_epoch},
        machine, title=f"{module.describe()}{' + LoRA' if lora else ''} on {run_config.data.source}")
    before = run.evaluate(val_text)
    session.echo(f"  before      val loss {before.loss:.4f}  ppl {before.perplexity:.2f}  "
                 f"bpc {before.bits_per_char:.3f}")
    outcome, t0 = {"finished": False}, time.perf_counter()
    try:
        trainer.train()
        if lora:
            lora.merge()  # a plain transformers model again, into which the best merged weights are read
        load_weights(module, run_dir / WEIGHTS, device)  # the best epoch's weights
        after = run.evaluate(val_text)
        stopped = EARLY_STOPPING if session.progress.out_of_patience(config.patience) else PLANNED_EPOCHS
        outcome = {"epochs": len(read_jsonl(run_dir / METRICS)), "train_seconds": round(time.perf_counter() - t0, 2),
                   "stop_reason": stopped, "finished": True, "val_loss_before": before.loss,
                   "val_loss_after": after.loss, "perplexity_before": before.perplexity,
                   "perplexity_after": after.perplexity}
    finally:
        summary = session.finish(not outcome["finished"], steps=trainer.state.global_step, **outcome)
    session.echo(f"done: validation perplexity {before.perplexity:.2f} -> {after.perplexity:.2f} (best epoch "
                 f"{summary['best_epoch']}, {summary['stop_reason']}); {summary['train_seconds']:.0f} s. "
                 f"Run: {run_dir}")
    module.eval()
    return run


# -- the base model ---------------------------------------------------------------------------------
def _load_base(base: str):
    """(transformers model, tokenizer) of a tinylm run, a local transformers folder or a Hub name."""
    path = Path(base)
    if path.is_dir() and is_run(path):
        return _load_run(path)
    if path.is_dir():
        return _from_pretrained(base, local=True)
    if not is_hub_name(base, owner_required=False):
        raise TinyLMError(f"--base {base}: no such directory, and not a Hub model name")
    return _from_pretrained(base, local=False)


def _hub_id(base: str) -> str | None:
    """The Hub id of the base (a model card's `base_model:`): the name itself, or the repo of a folder in the
    Hugging Face cache (.../models--ORG--NAME/snapshots/COMMIT); None for other local folders and runs."""
    path = Path(base)
    if not path.is_dir():
        return base
    match = re.fullmatch(r"models--(.+)", path.resolve().parent.parent.name)
    return match.group(1).replace("--", "/") if match and path.resolve().parent.name == "snapshots" else None


def _load_run(path: Path):
    model = RunConfig.load(path / CONFIG).model
    if isinstance(model, HFCausalLMConfig):  # an earlier fine-tune: its model and tokenizer are transformers'
        from transformers import AutoTokenizer

        return load_run(path).module.model, AutoTokenizer.from_pretrained(str(path))
    from ..models import FAMILIES

    if not FAMILIES[family_of(model)].model.exports_to_transformers:
        raise TinyLMError(f"--base {path} is a {family_of(model)} run; only GPT runs and fine-tuned runs can be "
                          f"fine-tuned (those that export to transformers)")
    try:
        from ..publishing.export import export_run
    except ImportError:
        raise TinyLMError(f"--base {path} is a GPT run, and this tinylm cannot export it") from None
    with tempfile.TemporaryDirectory(prefix="tinylm-export-") as folder:
        export_run(path, folder, format="transformers")
        return _from_pretrained(folder, local=True)


def _from_pretrained(name: str, local: bool):
    from huggingface_hub.constants import HF_HUB_CACHE
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # its load report of missing weights: _check_base_weights says it
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local)
        # safetensors only, so loading never unpickles; float32 whatever the published dtype (tinylm's).
        model, loading = AutoModelForCausalLM.from_pretrained(name, local_files_only=local, use_safetensors=True,
                                                              dtype=torch.float32, output_loading_info=True)
    except OSError as e:
        reason = str(e).strip().splitlines()[0]
        if local:
            raise TinyLMError(f"--base {name} is not a complete transformers model folder with safetensors "
                              f"weights ({reason})") from None
        raise TinyLMError(
            f"cannot get the base model {name!r} ({reason}). Offline, a Hub model must already be in the "
            f"Hugging Face cache ({HF_HUB_CACHE}; HF_HUB_OFFLINE=1 skips the connection attempts): run "
            f"`hf download {name}` where there is network, or pass --base DIR, a folder with config.json, "
            f"model.safetensors and the tokenizer files") from None
    except ValueError as e:  # e.g. a config that no causal-LM class accepts (BERT, T5 encoders, ...)
        reason = str(e).strip().splitlines()[0]
        raise TinyLMError(f"--base {name} is not a causal language model ({reason})") from None
    finally:
        transformers_logging.set_verbosity(verbosity)
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise TinyLMError(f"--base {name} has no fast tokenizer (tokenizer.json), which tinylm needs")
    _check_base_weights(name, model, loading)
    return model, tokenizer


def _check_base_weights(name: str, model, loading: dict) -> None:
    """Refuse a base whose weights file does not fill its architecture (transformers would start the missing
    weights from random values: a config of one model beside the weights of another) or holds NaN or infinite
    values (every step would be NaN)."""
    missing = sorted(set(loading.get("missing_keys") or ()) | {key for key, *_ in loading.get("mismatched_keys") or ()})
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3:,} more" if len(missing) > 3 else "")
        raise TinyLMError(f"--base {name}: its weights do not match its config.json ({model.config.model_type}): "
                          f"{shown} missing; was config.json replaced?")
    bad = next((key for key, tensor in model.state_dict().items()
                if tensor.is_floating_point() and not torch.isfinite(tensor).all()), None)
    if bad is not None:
        raise TinyLMError(f"--base {name}: its weights hold NaN or infinite values ({bad}); it cannot be fine-tuned")


# -- LoRA ---------------------------------------------------------------------------------------------
@dataclass
class _Lora:
    """The base wrapped in peft's LoRA adapters while it trains (`_add_lora`), and what the run records of it."""

    model: Any  # peft's PeftModelForCausalLM; the base inside it is the module's model, changed in place
    config: FinetuneConfig
    targets: list[str]  # the module names given, or the architecture's defaults
    layers: int  # layers that got an adapter

    def describe(self, trainable: int, parameters: int) -> str:
        """The startup line: the adapter's settings and its share of the base's parameters."""
        c = self.config
        return (f"rank {c.lora_rank}, alpha {c.lora_alpha}, dropout {c.lora_dropout:g} on {','.join(self.targets)} "
                f"({self.layers} layers): {trainable:,} trainable parameters ({trainable / parameters:.2%} of the "
                f"base's)")

    def facts(self) -> dict:
        """summary.json's `lora`: the settings the model card and a reader of the run need (tinylm_config.json
        has no place for them)."""
        c = self.config
        return {"rank": c.lora_rank, "alpha": c.lora_alpha, "dropout": c.lora_dropout, "targets": self.targets,
                "layers": self.layers, "adapter": ADAPTER}

    def save(self, run_dir: Path) -> None:
        """Keep an improving epoch: its adapter in adapter/, and the base with it merged where a full fine-tune
        keeps its weights, so the folder holds a complete model at every moment (a killed run loads too). The
        merge works on a copy: the training goes on from the unmerged adapter (the copy costs the base's
        weights once more in memory while it is written)."""
        _save_adapter(self.model, run_dir / ADAPTER)
        _save_transformers(copy.deepcopy(self.model).merge_and_unload(), run_dir)

    def merge(self) -> None:
        """After training: fold the adapter into the base's weights and remove peft's layers, so the module is a
        plain transformers model whose weights are all trainable, as a run loaded from disk is."""
        self.model.merge_and_unload().requires_grad_(True)


def _add_lora(hf_model, config: FinetuneConfig, base: str) -> _Lora:
    """Give the base's target layers LoRA adapters (peft changes hf_model in place) and freeze everything else.
    The targets are checked against the base first, so a typo names the layers that exist instead of failing
    inside peft."""
    from peft import LoraConfig, get_peft_model  # tinylm[lora]
    from transformers.pytorch_utils import Conv1D

    targets = config.lora_targets or _default_lora_targets(hf_model, base)
    layers = _lora_layers(hf_model, targets, base)
    lora_config = LoraConfig(
        task_type="CAUSAL_LM", r=config.lora_rank, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=targets,
        # GPT-2's Conv1D stores its weight (in, out), transposed from nn.Linear's; peft must know to merge it.
        fan_in_fan_out=any(isinstance(layer, Conv1D) for layer in layers))
    # The adapters' random start (lora_A) comes from the run's seed, so that a run repeats exactly.
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(config.seed)
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing")  # peft asks transformers 5.24
        model = get_peft_model(hf_model, lora_config)
    # adapter_config.json names the base as the user gave it (not a temporary export folder of a GPT run)
    model.peft_config["default"].base_model_name_or_path = _hub_id(base) or base
    return _Lora(model, config, targets, len(layers))


def _default_lora_targets(hf_model, base: str) -> list[str]:
    """peft's default targets for the architecture (GPT-2: c_attn, the attention's query/key/value layer)."""
    from peft.utils import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS

    model_type = hf_model.config.model_type
    if model_type not in DEFAULTS:
        raise TinyLMError(f"peft has no default LoRA targets for {model_type} models ({base}): name them with "
                          f"--lora-targets (its layers: {', '.join(_adaptable_names(hf_model))})")
    return list(DEFAULTS[model_type])


def _lora_layers(hf_model, targets: list[str], base: str) -> list[torch.nn.Module]:
    """The layers `targets` name (as peft matches them: a module's full name, or its last parts), each one peft
    can adapt and none sharing its weight with another module (a tied lm_head: merging its update would change
    the embedding too)."""
    named, shared, layers = dict(hf_model.named_modules()), _tied_weights(hf_model), []
    choices = ", ".join(_adaptable_names(hf_model))
    for target in targets:
        found = [module for name, module in named.items() if name == target or name.endswith("." + target)]
        if not found:
            raise TinyLMError(f"--lora-targets {target}: {base} has no such layer; its layers are {choices}")
        kind = next((type(m).__name__ for m in found if not isinstance(m, _adaptable_types())), None)
        if kind is not None:
            raise TinyLMError(f"--lora-targets {target}: a {kind} takes no LoRA adapter; choose among {choices}")
        if any(id(getattr(m, "weight", None)) in shared for m in found):
            raise TinyLMError(f"--lora-targets {target}: its weight is shared with another layer (as GPT-2's "
                              f"embedding and output layer share one), so its adapter could not be merged; leave "
                              f"it out")
        layers += found
    return layers


def _adaptable_types() -> tuple[type, ...]:
    """The layer types peft's LoRA adapts (the common ones: peft also knows a few rarer kinds)."""
    from transformers.pytorch_utils import Conv1D

    nn = torch.nn
    return nn.Linear, nn.Embedding, nn.Conv1d, nn.Conv2d, nn.Conv3d, Conv1D


def _adaptable_names(hf_model) -> list[str]:
    """The distinct last names of the base's layers that LoRA can adapt (c_attn, c_proj, ...): what to offer."""
    return sorted({name.rsplit(".", 1)[-1] for name, module in hf_model.named_modules()
                   if name and isinstance(module, _adaptable_types())})


def _tied_weights(model: torch.nn.Module) -> set[int]:
    """ids of the parameters that more than one module holds."""
    holders: dict[int, int] = {}
    for _, module in model.named_modules(remove_duplicate=False):
        for parameter in module.parameters(recurse=False):
            holders[id(parameter)] = holders.get(id(parameter), 0) + 1
    return {key for key, count in holders.items() if count > 1}


def _parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, all) parameters, each shared (tied) tensor counted once."""
    parameters = list(model.parameters())  # shared tensors are listed once
    return sum(p.numel() for p in parameters if p.requires_grad), sum(p.numel() for p in parameters)


def _save_adapter(peft_model, folder: Path) -> None:
    """adapter_config.json and adapter_model.safetensors as peft writes them (PeftModel.from_pretrained reads
    them), each replacing the earlier one atomically; peft's template README is left out."""
    folder.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".save-") as staging:
        # the vocabulary is the base's: no embedding is saved whole (and no Hub look-up decides it)
        peft_model.save_pretrained(staging, save_embedding_layers=False)
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            os.replace(Path(staging) / name, folder / name)


# -- tokenizer and examples -----------------------------------------------------------------------
def _tinylm_tokenizer(hf_tokenizer) -> Tokenizer:
    """tinylm's Tokenizer over the base's tokenizers pipeline; generation stops at its end-of-text token."""
    backend = tokenizers.Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())  # a copy to change
    # A tokenizer.json may carry a max length or padding; tinylm encodes whole texts and cuts blocks itself.
    backend.no_truncation()
    backend.no_padding()
    eos = hf_tokenizer.eos_token
    # A pad token that is the eos token (a common GPT-2 habit) would be banned from sampling: keep eos only.
    pad = hf_tokenizer.pad_token if hf_tokenizer.pad_token != eos else None
    return Tokenizer(backend, "pretrained", pad=pad, unk=hf_tokenizer.unk_token, eos=eos)


def _save_tokenizer(hf_tokenizer, tokenizer: Tokenizer, run_dir: Path) -> None:
    """The base's tokenizer files (AutoTokenizer loads them) plus what `Tokenizer.load` reads."""
    with tempfile.TemporaryDirectory() as folder:
        hf_tokenizer.save_pretrained(folder)
        meta = json.loads((Path(folder) / "tokenizer_config.json").read_text(encoding="utf-8"))
        for file in Path(folder).iterdir():
            if file.name not in ("tokenizer.json", "tokenizer_config.json") and file.is_file():
                with atomic_path(run_dir / file.name) as tmp:
                    shutil.copyfile(file, tmp)
    write_text(run_dir / "tokenizer.json", tokenizer.backend.to_str(pretty=True))
    meta.update({"tinylm_kind": tokenizer.kind, "pad_token": tokenizer.pad_token,
                 "unk_token": tokenizer.unk_token, "eos_token": tokenizer.eos_token})
    write_json(run_dir / "tokenizer_config.json", meta)


def _blocks(ids: list[int], block_size: int) -> list[list[int]]:
    """Blocks of `block_size` tokens that overlap by one: the model predicts every token after the first of
    each block, so every token after the very first is a target exactly once (none lost at block edges)."""
    return [ids[i:i + block_size] for i in range(0, len(ids) - 1, block_size - 1)]


def _targets(examples: list[list[int]]) -> int:
    """Tokens the model learns to predict: all but the first of each example."""
    return sum(len(e) - 1 for e in examples)


def _text_blocks(tokenizer: Tokenizer, text: str, block_size: int) -> list[list[int]]:
    return _blocks(tokenizer.encode(text), block_size)


def _line_examples(tokenizer: Tokenizer, text: str, block_size: int) -> list[list[int]]:
    """One example per non-empty line: <eos> line <eos>. The leading <eos> is the context the first token is
    predicted from (generation from an empty prompt starts there too); the trailing one teaches the model to
    end a line. A line longer than a block is cut into overlapping blocks."""
    eos = tokenizer.eos_id
    return [block for line in text.splitlines() if line.strip()
            for block in _blocks([eos, *tokenizer.encode(line), eos], block_size)]


def _next_token_loss(outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
    """Mean cross-entropy of each position's prediction of the next token (the Trainer's compute_loss_func).

    The model's own loss is not used: with transformers 5.23 the Trainer divides GPT-2's summed loss by every
    label of the batch, the first of each row included (that label is never a target), which reports a
    loss (T-1)/T too low. A per-batch mean needs no count from the Trainer (no gradient accumulation here).
    """
    logits = outputs.logits[:, :-1].float()  # (B, T-1, V): position t predicts token t+1
    targets = labels[:, 1:]  # (B, T-1)
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


def _collate(examples: list[list[int]]) -> dict[str, torch.Tensor]:
    """Right-padded batch; padding is masked out of attention and out of the loss (labels IGNORE)."""
    width = max(map(len, examples))
    input_ids = torch.zeros(len(examples), width, dtype=torch.long)  # id 0 under the mask: never seen
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    attention_mask = torch.zeros(len(examples), width, dtype=torch.long)
    for row, example in enumerate(examples):
        ids = torch.tensor(example, dtype=torch.long)
        input_ids[row, : len(ids)] = labels[row, : len(ids)] = ids  # shifted in _next_token_loss
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


# -- run directory --------------------------------------------------------------------------------
def _probe_batch(examples: list, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The first training examples as one batch (cut to the shortest), for the precision probe."""
    rows = examples[:batch_size]
    width = min(len(r) for r in rows)
    ids = torch.tensor([r[:width] for r in rows], dtype=torch.long, device=device)
    return ids[:, :-1], ids[:, 1:]


def _run_config(data: DataConfig, block_size: int, config: FinetuneConfig, tokenizer: Tokenizer,
                module: HFCausalLM, train_text: str) -> RunConfig:
    """The run's config.json: what `tinylm load`/`eval` need, and the Trainer's settings in tinylm's terms."""
    prompt = config.sample_prompt
    if prompt is None:
        prompt = default_sample_prompt(train_text, config.lines)
    return RunConfig(
        # Blocks overlap by one token (see _blocks): window starts are block_size - 1 apart.
        data=dataclasses.replace(data, block_size=block_size, stride=block_size - 1, lines=config.lines,
                                 target="every"),
        tokenizer=TokenizerConfig(kind=tokenizer.kind, vocab_size=tokenizer.vocab_size),
        model=module.config,
        # the settings both configs have, as given; then what the Trainer is set up with (_make_trainer)
        train=TrainConfig(**{**_shared_fields(config, TrainConfig), "sample_prompt": prompt, "optimizer": "adamw",
                             "betas": (0.9, 0.999), "lr_schedule": "cosine", "min_lr_ratio": 0.1, "grad_clip": 1.0,
                             "eval_batch_size": config.batch_size}),
    )


def _shared_fields(config, kind: type) -> dict:
    """The fields of the dataclass `config` that the dataclass `kind` has too, with their values."""
    names = {field.name for field in dataclasses.fields(kind)}
    return {field.name: getattr(config, field.name) for field in dataclasses.fields(config) if field.name in names}


# -- the Trainer ----------------------------------------------------------------------------------
def _make_trainer(session: RunSession, config: FinetuneConfig, module: HFCausalLM, lora: _Lora | None,
                  tokenizer: Tokenizer, train_examples: list, val_examples: list, val_text: str, steps_per_epoch: int,
                  progress: bool, machine: MachineChoice):
    from transformers import Trainer, TrainerCallback, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    run_dir, run_config = session.run_dir, session.config

    args = TrainingArguments(
        output_dir=str(run_dir / TRAINER_DIR),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        learning_rate=config.lr,
        weight_decay=config.weight_decay,
        warmup_steps=config.warmup_steps,
        lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": 0.1},
        max_grad_norm=1.0,
        eval_strategy="epoch",  # by tinylm's evaluation: see TinyLMTrainer.evaluate below
        # No Trainer checkpoints: _RunDirEvents writes the best weights into the run directory after each
        # improving epoch, stops after `patience` epochs without one, and finetune() reloads the best.
        save_strategy="no",
        prediction_loss_only=True,  # never hold (examples x block x vocabulary) logits during evaluation
        logging_strategy="steps",
        logging_steps=max(1, steps_per_epoch // 25),
        report_to="none",  # tinylm's own loggers log, with the keys of `tinylm train` (see _RunDirEvents)
        run_name=config.run_name or run_dir.name,
        bf16=machine.precision.bf16,  # settle_machine decided (probe included); the Trainer only applies it
        use_cpu=machine.device.type == "cpu",
        seed=config.seed,
        remove_unused_columns=False,  # examples are plain token lists, not dataset rows
        disable_tqdm=not progress,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinning is for copies to a GPU (warns without one)
    )
    # transformers is imported only when fine-tuning (it takes seconds), so the classes get their base here.
    run_dir_callback = type("RunDirCallback", (_RunDirEvents, TrainerCallback), {})
    save_best = lora.save if lora else (lambda folder: _save_transformers(module.model, folder))
    callbacks = [run_dir_callback(session, module, tokenizer, train_examples, steps_per_epoch, save_best)]

    class TinyLMTrainer(Trainer):
        def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
            """tinylm's evaluation of the validation text (as `tinylm eval RUN` scores it: every token once,
            a mean over tokens), so epoch lines, early stopping, the best checkpoint and the summary agree."""
            run = LoadedModel(module, tokenizer, run_config, run_dir, self.args.device)
            result = run.evaluate(val_text)
            metrics = {f"{metric_key_prefix}_loss": result.loss, "epoch": self.state.epoch}
            self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control,
                                                             metrics=metrics, result=result)
            return metrics

    # With LoRA the Trainer gets peft's wrapper (it optimizes the adapters only); module.model is the base
    # inside it, whose adapted layers tinylm's evaluation and samples run through.
    trainer = TinyLMTrainer(model=lora.model if lora else module.model, args=args, train_dataset=train_examples,
                            eval_dataset=val_examples,  # unused (see evaluate), but eval_strategy needs one
                            data_collator=_collate, compute_loss_func=_next_token_loss, callbacks=callbacks)
    # Our per-epoch lines replace the log dicts the Trainer prints; its progress bar stays, without them.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if progress:
        trainer.add_callback(type("ProgressBar", (ProgressCallback,), {"on_log": lambda *a, **k: None}))
    return trainer


class _RunDirEvents:
    """The Trainer's events, reported to the run session (combined with TrainerCallback in _make_trainer): after
    every evaluation the epoch (the session keeps the best weights, writes metrics.jsonl, a sample, loss.png and
    the logger's epoch, as for `tinylm train`); every few steps the logger's train/loss, train/lr and
    train/tokens_per_s; the training stops when the session's Progress is out of patience."""

    def __init__(self, session: RunSession, module: HFCausalLM, tokenizer: Tokenizer, train_examples: list,
                 steps_per_epoch: int, save_best: Callable[[Path], None]):
        self.session, self.module, self.tokenizer = session, module, tokenizer
        self.save_best = save_best  # writes the model into the run directory it is given
        self.steps_per_epoch = steps_per_epoch
        self.train_tokens = sum(map(len, train_examples))  # tokens read per epoch
        self.last_logged_step, self.loss_sum, self.loss_steps = 0, 0.0, 0
        self.curve: list[list[float]] = []  # [step, mean training loss since the previous point]
        self.lr = 0.0
        self.epoch_started = self.eval_started = 0.0
        self.epoch_first_step = 0
        self.epoch_seconds = self.elapsed_seconds = 0.0  # training time, evaluation left out

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.epoch_started = time.perf_counter()
        self.epoch_first_step = state.global_step

    def on_epoch_end(self, args, state, control, **kwargs):
        self.eval_started = time.perf_counter()
        self.epoch_seconds = self.eval_started - self.epoch_started
        self.elapsed_seconds += self.epoch_seconds
        control.should_log = True  # log the loss of the epoch's last steps before the evaluation that follows
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        steps = state.global_step - self.last_logged_step
        if not logs or "loss" not in logs or steps <= 0:  # evaluation and end-of-training logs: not steps
            return
        # logs["loss"]: the mean training loss of the steps since the previous log.
        if not math.isfinite(logs["loss"]):
            raise TinyLMError(f"the training loss became {logs['loss']} by step {state.global_step}; try a lower "
                              f"--lr (the run keeps its best epoch so far)")
        self.loss_sum += logs["loss"] * steps
        self.loss_steps += steps
        self.last_logged_step = state.global_step
        self.curve.append([state.global_step, round(logs["loss"], 5)])
        self.lr = logs.get("learning_rate", self.lr)
        seconds = time.perf_counter() - self.epoch_started
        tokens = self.train_tokens * (state.global_step - self.epoch_first_step) / self.steps_per_epoch
        self.session.log_step(state.global_step, logs["loss"], self.lr, tokens / max(seconds, 1e-9))

    def on_evaluate(self, args, state, control, metrics=None, result=None, **kwargs):
        session = self.session
        session.end_epoch(
            model=LoadedModel(self.module, self.tokenizer, session.config, session.run_dir, args.device),
            keep_best=lambda path: self.save_best(path.parent),
            epoch=round(state.epoch), step=state.global_step, train_loss=self.loss_sum / max(self.loss_steps, 1),
            result=result, lr=self.lr, tokens=self.train_tokens, epoch_seconds=self.epoch_seconds,
            eval_seconds=time.perf_counter() - self.eval_started, elapsed_seconds=self.elapsed_seconds,
            steps_per_epoch=self.steps_per_epoch, curve=self.curve)
        self.loss_sum, self.loss_steps, self.curve = 0.0, 0, []
        if session.progress.out_of_patience(session.config.train.patience):
            session.echo(f"early stopping: no better validation loss for {session.config.train.patience} epochs")
            control.should_training_stop = True
        return control


def _save_transformers(model, run_dir: Path) -> None:
    """model.safetensors, config.json and generation_config.json as save_pretrained writes them (what
    AutoModelForCausalLM and pipeline read; a tied lm_head is stored once), each file replacing the earlier
    one atomically so the run directory is never half-written."""
    with tempfile.TemporaryDirectory(dir=run_dir, prefix=".save-") as folder:
        model.save_pretrained(folder)
        for file in Path(folder).iterdir():
            os.replace(file, run_dir / file.name)
