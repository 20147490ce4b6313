"""Stage 1 of the pipeline: text in, token windows out."""

from .sources import BUILTIN_CORPORA, Corpus, load_corpus
from .splits import load_split
from .windows import IGNORE, TokenWindows, eval_batches, split_text

__all__ = ["BUILTIN_CORPORA", "Corpus", "load_corpus", "load_split", "IGNORE", "TokenWindows", "eval_batches", "split_text"]
