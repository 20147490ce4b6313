"""Train / validation text for a DataConfig."""

from __future__ import annotations

from typing import Any

from ..errors import TinyLMError
from .lines import split_lines
from .sources import load_corpus
from .tokenfile import is_prepared
from .windows import split_text


def load_split(data: Any) -> tuple[str, str]:
    """(train text, validation text): the source's own validation split, --val-data, or the text's tail."""
    if is_prepared(data.source):  # training reads its token files (open_prepared); the text is not there
        raise TinyLMError(f"{data.source} is a prepared token folder (tinylm prepare): it holds token ids, not "
                          f"the text this needs; use the text it was prepared from (or, to evaluate, --text FILE)")
    strip = getattr(data, "strip_gutenberg", False)
    corpus = load_corpus(data.source, data.encoding, data.text_column, data.hf_split, data.hf_config, strip)
    if data.val_source:
        val = load_corpus(data.val_source, data.encoding, data.text_column, data.hf_split, data.hf_config,
                          strip).train
        train = corpus.train
    elif corpus.val is not None:
        train, val = corpus.train, corpus.val
    else:
        train, val = (split_lines if data.lines else split_text)(corpus.train, data.val_fraction)
    if not train.strip():
        raise TinyLMError(f"the training text of {data.source!r} is empty (or only whitespace)")
    if not val.strip():
        raise TinyLMError(
            f"the validation split of {data.source!r} is empty: raise --val-fraction or pass --val-data FILE"
        )
    return train, val
