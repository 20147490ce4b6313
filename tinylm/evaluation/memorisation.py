"""Memorisation: how much of a model's output is copied from its training text.

- the longest copy: the longest run of consecutive words of the generated text that also follow each
  other in the training text;
- novel n-grams: the share of the generated word n-grams that never occur in the training text.
A model that learned the language rather than the text writes short copies and mostly novel n-grams.

Both work on words (letters, digits, inner apostrophes; punctuation and spacing ignored), so a word-level
model whose decoder writes "Hi , you" compares with the training text's "Hi, you" like a char model does.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

WORD = re.compile(r"\w+(?:['’]\w+)*")
NGRAM_SIZES = (2, 3, 4)


def generated_words(text: str, prompt: str = "") -> list[str]:
    """The words of `text` (a prompt followed by its continuation) that the model wrote entirely: not a
    word that starts inside the prompt, nor a last word touching the end (the sample may cut it short)."""
    words = []
    for match in WORD.finditer(text):
        if match.start() >= len(prompt) and match.end() < len(text):
            words.append(match.group())
    return words


class TrainingWords:
    """The training text as one string of words, searched for copied word sequences."""

    def __init__(self, training_text: str):
        # Spaces on both ends, so " a b " only matches whole words.
        self.joined = " " + " ".join(WORD.findall(training_text)) + " "

    def __contains__(self, words: list[str]) -> bool:
        return " " + " ".join(words) + " " in self.joined

    def longest_copy(self, words: list[str]) -> list[str]:
        """The longest run of consecutive `words` found in the training text. Matching statistics: the run
        found at word i minus its first word is a run at word i + 1, so about 2 * len(words) searches."""
        best: list[str] = []
        length = 0
        for i in range(len(words)):
            if len(best) >= len(words) - i:
                break
            length = max(length - 1, 0)
            while i + length < len(words) and words[i : i + length + 1] in self:
                length += 1
            if length > len(best):
                best = words[i : i + length]
        return best

    def novel(self, words: list[str], n: int) -> tuple[int, int]:
        """(novel, all) word n-grams of `words`."""
        grams = [words[i : i + n] for i in range(len(words) - n + 1)]
        return sum(gram not in self for gram in grams), len(grams)


@dataclass
class MemorisationResult:
    samples: int
    words: int
    """Generated words measured, all samples together."""
    longest_copy: int
    """Words in the longest span of a sample copied verbatim from the training text."""
    longest_copy_text: str
    novel_ngrams: dict[int, float | None]
    """n -> share of the samples' word n-grams absent from the training text (None: no n-gram)."""

    def to_dict(self) -> dict:
        return {**asdict(self), "novel_ngrams": {str(n): v for n, v in self.novel_ngrams.items()}}

    def summary(self) -> str:
        novel = ", ".join(f"{n}-grams {v:.1%}" for n, v in self.novel_ngrams.items() if v is not None)
        return (f"longest copy from the training text: {self.longest_copy} words "
                f"({self.longest_copy_text!r}); novel {novel or '-'} "
                f"({self.samples} samples, {self.words} words)")


def memorisation(samples: list[str], training_text: str | TrainingWords, prompt: str = "",
                 ngram_sizes: tuple[int, ...] = NGRAM_SIZES) -> MemorisationResult:
    """Memorisation statistics of generated `samples` (each the prompt followed by its continuation)."""
    training = training_text if isinstance(training_text, TrainingWords) else TrainingWords(training_text)
    per_sample = [generated_words(text, prompt) for text in samples]
    longest = max((training.longest_copy(words) for words in per_sample), key=len, default=[])
    novel = {}
    for n in ngram_sizes:
        counts = [training.novel(words, n) for words in per_sample]
        total = sum(c[1] for c in counts)
        novel[n] = sum(c[0] for c in counts) / total if total else None
    return MemorisationResult(samples=len(samples), words=sum(map(len, per_sample)),
                              longest_copy=len(longest), longest_copy_text=" ".join(longest),
                              novel_ngrams=novel)
