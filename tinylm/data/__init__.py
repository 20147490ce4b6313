"""Stage 1 of the pipeline: text in, training and evaluation examples out."""

from .examples import EvalSet, evaluation_examples, prepared_examples, training_examples
from .lines import LineSamples, split_lines
from .sources import BUILTIN_CORPORA, Corpus, TextSource, find_source, load_corpus
from .splits import load_split
from .tokenfile import PreparedCorpus, is_prepared, open_prepared, prepare
from .training_data import TrainingData
from .windows import IGNORE, TokenWindows, eval_batches, split_text

__all__ = ["BUILTIN_CORPORA", "Corpus", "EvalSet", "IGNORE", "LineSamples", "PreparedCorpus", "TextSource",
           "TokenWindows", "TrainingData", "eval_batches", "evaluation_examples", "find_source", "is_prepared",
           "load_corpus", "load_split", "open_prepared", "prepare", "prepared_examples", "split_lines", "split_text",
           "training_examples"]
