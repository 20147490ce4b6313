"""What a run trains on, decided once: a prepared folder's token files (`tinylm prepare`: no text is read) or the
text of a source split into training and validation parts. Training, resuming and evaluating a run all ask
this one class, so the two shapes of data are told apart in one place.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import TinyLMError
from ..tokenizers import build_tokenizer
from .examples import EvalSet, evaluation_examples, prepared_examples, training_examples
from .lines import LineSamples
from .splits import load_split
from .tokenfile import fixed_tokenizer_config, is_prepared, large_text_note, open_prepared
from .windows import TokenWindows


@dataclass
class TrainingData:
    """A prepared folder (`prepared`) or the text's two parts (`train_text`, `val_text`)."""

    prepared: Any = None
    train_text: str | None = None
    val_text: str | None = None

    @classmethod
    def open(cls, dc, echo: Callable[[str], None] | None = None) -> TrainingData:
        """The data `dc` (a DataConfig) names; a note about a large text goes to `echo`. Bad data fails here,
        before anything is written."""
        if is_prepared(dc.source):
            return cls(prepared=open_prepared(dc.source))
        note = large_text_note(dc.source)
        if note and echo:
            echo(note)
        train_text, val_text = load_split(dc)
        return cls(train_text=train_text, val_text=val_text)

    @property
    def fingerprint(self) -> str:
        """The data's digest: a resume refuses data that changed since the run started."""
        if self.prepared is not None:
            return self.prepared.fingerprint
        digest = hashlib.sha256(self.train_text.encode("utf-8"))
        digest.update(b"\0")
        digest.update(self.val_text.encode("utf-8"))
        return digest.hexdigest()

    def what(self) -> str:
        return "the prepared tokens" if self.prepared is not None else "the text"

    def head(self) -> str:
        """The start of the training text (the default sample prompt comes from it)."""
        return self.prepared.head if self.prepared is not None else self.train_text

    def tokenizer(self, config):
        """A prepared folder's own tokenizer, or one built from the training text as `config` says."""
        return self.prepared.tokenizer if self.prepared is not None else build_tokenizer(config, self.train_text)

    def tokenizer_config(self, requested):
        """The run's tokenizer settings: a prepared folder's own (other requested ones are refused)."""
        return fixed_tokenizer_config(self.prepared, requested) if self.prepared is not None else requested

    def validation(self, tokenizer, dc) -> EvalSet:
        """The validation split, ready to score."""
        if self.prepared is not None:
            return prepared_examples(self.prepared, dc)[1]
        return evaluation_examples(tokenizer, self.val_text, dc)

    def examples(self, tokenizer, dc) -> tuple[TokenWindows | LineSamples, EvalSet]:
        """Training examples and the validation set; refuses data too short for either (before any file is
        written)."""
        if self.prepared is not None:
            windows, val_set = prepared_examples(self.prepared, dc)
        else:
            windows, val_set = training_examples(tokenizer, self.train_text, dc), self.validation(tokenizer, dc)
        if val_set.tokens < 2 or (dc.target == "last" and not dc.lines and val_set.tokens <= dc.block_size):
            raise TinyLMError(
                f"the validation split has {val_set.tokens} tokens, too few to evaluate "
                f"(need more than {dc.block_size if dc.target == 'last' else 1}); raise --val-fraction"
            )
        return windows, val_set
