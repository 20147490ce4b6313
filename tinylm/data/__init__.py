"""Stage 1 of the pipeline: text in, training and evaluation examples out."""

from .examples import EvalSet, evaluation_examples, training_examples
from .lines import LineSamples, split_lines
from .sources import BUILTIN_CORPORA, Corpus, load_corpus
from .splits import load_split
from .windows import IGNORE, TokenWindows, eval_batches, split_text

__all__ = ["BUILTIN_CORPORA", "Corpus", "EvalSet", "IGNORE", "LineSamples", "TokenWindows", "eval_batches",
           "evaluation_examples", "load_corpus", "load_split", "split_lines", "split_text", "training_examples"]
