"""A run directory, loaded: model + tokenizer + config, ready to generate and evaluate. It lies above generation
and evaluation (it calls both) and below what loads runs: training returns one, publishing and the lab load them.

    run = tinylm.load("runs/shakespeare-lstm")
    print(run.generate("ROMEO:", max_new_tokens=200, temperature=0.8))
    for piece in run.stream("ROMEO:"): print(piece, end="")
    run.evaluate()            # on the run's own validation split
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import torch

from .config import RunConfig
from .data import TrainingData
from .data.sources import nfc
from .errors import TinyLMError
from .evaluation.scoring import EvalResult, evaluate_text
from .generation.sampling import SamplingConfig, generate_ids
from .io import read_jsonl
from .machine.devices import check_generation_precision, resolve_device
from .models import LanguageModel, build_model
from .models.weights import load_weights
from .run.layout import METRICS, WEIGHTS, data_source, run_config_file
from .tokenizers import Tokenizer


class LoadedModel:
    """A trained model with its tokenizer and config: what `tinylm.load` and `tinylm.train` return."""

    def __init__(self, module: LanguageModel, tokenizer: Tokenizer, config: RunConfig,
                 run_dir: Path | None = None, device: torch.device | str = "cpu"):
        self.module = module
        self.tokenizer = tokenizer
        self.config = config
        self.run_dir = Path(run_dir) if run_dir else None
        self.device = torch.device(device)
        self.precision = "auto"  # generation's precision when a call names none (see SamplingConfig.precision)
        self.data_refused: str | None = None  # why the data its config names is not read (see load)

    def __repr__(self) -> str:
        return (f"LoadedModel({self.config.model.__class__.__name__}, {self.num_parameters():,} parameters, "
                f"tokenizer={self.tokenizer.kind}, run_dir={str(self.run_dir)!r})")

    def num_parameters(self) -> int:
        return self.module.num_parameters()

    @property
    def metrics(self) -> list[dict]:
        """The per-epoch records of metrics.jsonl."""
        return read_jsonl(self.run_dir / METRICS) if self.run_dir else []

    def best_record(self) -> dict | None:
        """The metrics record of the best evaluated epoch (the one whose weights were kept), or None for a model
        without evaluations."""
        scored = [r for r in self.metrics if isinstance(r.get("val_loss"), (int, float))]
        return min(scored, key=lambda r: r["val_loss"]) if scored else None

    def best_validation(self) -> str | None:
        """The best validation loss with the seed it was trained with ("val loss 1.4317 (epoch 18, seed
        1337)"), or None. A loss moves with the seed: the seed comes with it."""
        best = self.best_record()
        if best is None:
            return None
        return f"val loss {best['val_loss']:.4f} (epoch {best.get('epoch', '?')}, seed {self.config.train.seed})"

    # -- generation --------------------------------------------------------------------------------
    def prompt_ids(self, prompt: str, warn: bool = True) -> list[int]:
        """Token ids of `prompt`; an empty prompt starts from <eos> (the start of a new text).
        In line mode every text starts after an <eos>, so the prompt is put after one."""
        start = [self.tokenizer.eos_id] if self.config.data.lines and self.tokenizer.eos_id is not None else []
        prompt = nfc(prompt)  # as the training text was read: a decomposed "ü" is the composed one
        if prompt:
            unknown = self.tokenizer.unknown_symbols(prompt)
            if unknown and warn:
                shown = ", ".join(repr(u) for u in unknown[:10])
                print(f"warning: the prompt has symbols not in the vocabulary, read as <unk>: {shown}",
                      file=sys.stderr)
            return start + self.tokenizer.encode(prompt)
        if self.tokenizer.eos_id is None:
            raise TinyLMError("this tokenizer has no <eos> token: give a non-empty prompt")
        return [self.tokenizer.eos_id]

    def _never_generated(self) -> tuple[int, ...]:
        """<pad> and <unk>: not text, so never sampled (<eos> ends a text; a pretrained tokenizer whose unk or
        pad is its end-of-text token keeps that token as the stop)."""
        t = self.tokenizer
        return tuple(i for i in dict.fromkeys((t.pad_id, t.unk_id)) if i is not None and i != t.eos_id)

    def stream(self, prompt: str = "", **sampling) -> Iterator[str]:
        """Yield the generated text piece by piece as tokens are sampled (the prompt is not repeated)."""
        config = sampling.pop("config", None) or SamplingConfig(**{"precision": self.precision, **sampling})
        config.validate(self.tokenizer.vocab_size)
        ids = self.prompt_ids(prompt)
        banned = self._never_generated()
        # The continuation is read off the decoding of prompt + new tokens, so what joins them (the space a
        # word tokenizer puts between tokens) and characters made of several tokens (byte-level BPE) come
        # out right; a piece ending in an unfinished character waits for the next token.
        context = self.tokenizer.decode(ids, text_only=True)  # generated text holds text only (tokenizers.py)
        emitted = ""
        new: list[int] = []

        def continuation() -> str:
            text = self.tokenizer.decode(ids + new, text_only=True)
            return text[len(context):] if text.startswith(context) else self.tokenizer.decode(new, text_only=True)

        for token in generate_ids(self.module, ids, config, self.tokenizer.eos_id, banned, self.device):
            new.append(token)
            text = continuation()
            if text.endswith("\ufffd"):
                continue
            yield text[len(emitted):]
            emitted = text
        text = continuation()
        if len(text) > len(emitted):
            yield text[len(emitted):]

    def generate(self, prompt: str = "", **sampling) -> str:
        """The prompt (in Unicode NFC, as the model reads it) followed by its continuation (see SamplingConfig for
        the options)."""
        prompt = nfc(prompt)
        return prompt + "".join(self.stream(prompt, **sampling))

    def check_data(self) -> None:
        """Refuse to read the data the run's config names when `load` found it unsafe (a run from the Hub that
        names a local file, a device file): call before reading `config.data`."""
        if self.data_refused:
            raise TinyLMError(self.data_refused)

    @torch.no_grad()
    def next_token_distribution(self, prompt: str = "", temperature: float = 1.0,
                                top: int | None = None) -> list[tuple[str, float]]:
        """The model's next-token probabilities after `prompt` at `temperature`, most likely first
        (the `top` most likely when given). Tokens are shown as text (special tokens by name)."""
        from .generation.sampling import tempered_softmax

        ids = torch.tensor([self.prompt_ids(prompt, warn=False)], device=self.device)
        self.module.eval()
        logits, _ = self.module(ids, None)
        probs = tempered_softmax(logits[0, -1].float(), temperature)
        if banned := self._never_generated():  # charted as generation samples: never <pad> or <unk>
            probs[list(banned)] = 0.0
            probs = probs / probs.sum()
        order = torch.argsort(probs, descending=True)[: top or probs.numel()]
        return [(self.tokenizer.token_text(int(i)), float(probs[i])) for i in order]

    # -- evaluation --------------------------------------------------------------------------------
    def evaluate(self, text: str | None = None, batch_size: int | None = None) -> EvalResult:
        """Loss, perplexity and bits per char on `text`, or on the run's validation split."""
        batch_size = batch_size or self.config.train.eval_batch_size
        if text is None:
            self.check_data()
            data = TrainingData.open(self.config.data)
            if data.prepared is not None:  # a prepared token folder: its val.bin
                from .evaluation.scoring import score

                return score(self.module, data.validation(self.tokenizer, self.config.data), batch_size,
                             self.config.data.block_size, self.tokenizer.vocab_size, self.device)
            text = data.val_text
        if not text:
            raise TinyLMError("the evaluation text is empty")
        text = nfc(text)
        return evaluate_text(self.module, self.tokenizer, text, self.config.data, batch_size, self.device)


def contain_data(config: RunConfig, run_dir: Path, from_hub: bool) -> str | None:
    """Point the run's data at what may be read (tinylm.run.layout.data_source); the reason when it may not."""
    refused = None
    for name in ("source", "val_source"):
        value = getattr(config.data, name)
        safe, why = data_source(value, run_dir, from_hub=from_hub)
        if why is not None:
            origin = "downloaded from the Hub" if from_hub else "local"
            refused = refused or (f"the data of the {origin} run {run_dir} is not read: {why}; evaluate on a "
                                  f"file of yours (tinylm eval RUN --text FILE)")
        else:
            setattr(config.data, name, safe)
    return refused


def load_run(run_dir: str | Path, device: str = "cpu", precision: str = "auto", *,
             from_hub: bool = False) -> LoadedModel:
    """Load a local run directory (config.json, tokenizer.json, model.safetensors) in one call. `device` as in
    tinylm.machine.devices.resolve_device ("auto" for the fastest there is); `precision` is what generation uses
    unless a call says otherwise; `from_hub`: the folder came from somewhere else (its config's data paths are not
    read).
    `tinylm.load` (tinylm.publishing.hub.load) also takes a pushed folder or a Hub repo id, and ends here."""
    target = resolve_device(device)
    check_generation_precision(precision, target)  # a bad choice fails before anything is read
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TinyLMError(f"run directory {run_dir} does not exist" if not run_dir.exists()
                          else f"{run_dir} is not a run directory (it is a file)")
    config = RunConfig.load(run_config_file(run_dir))
    data_refused = contain_data(config, run_dir, from_hub)
    tokenizer = Tokenizer.load(run_dir)  # tokenizer.json and tokenizer_config.json, each checked
    if tokenizer.vocab_size != config.model.vocab_size:
        raise TinyLMError(
            f"tokenizer.json has {tokenizer.vocab_size} tokens but the model expects {config.model.vocab_size}"
        )
    module = build_model(config.model)
    load_weights(module, run_dir / WEIGHTS, target)
    bad = next((name for name, p in module.state_dict().items() if p.is_floating_point() and not p.isfinite().all()),
               None)
    if bad is not None:
        raise TinyLMError(f"{run_dir / WEIGHTS} is damaged: {bad} holds NaN or infinite values")
    module.to(target).eval()
    run = LoadedModel(module, tokenizer, config, run_dir, target)
    run.precision = precision
    run.data_refused = data_refused
    return run
