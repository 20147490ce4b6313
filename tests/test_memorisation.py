"""Memorisation measures (tinylm/evaluation/memorisation.py) and `tinylm eval --memorisation`."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest

from tinylm.evaluation.memorisation import TrainingWords, generated_words, memorisation

TRAINING = "The cat sat on the mat. The dog sat on the log, and the cat ran to the dog."


def test_generated_words_leave_out_the_prompt_and_a_word_cut_at_the_end():
    assert generated_words("ROMEO: I know not wha", "ROMEO:") == ["I", "know", "not"]
    assert generated_words("The king is here.\n", "The ki") == ["is", "here"]  # "king" starts in the prompt
    assert generated_words("Fair Verona's walls, ", "") == ["Fair", "Verona's", "walls"]


def test_longest_copy_is_the_longest_common_run_of_words():
    rng = random.Random(0)
    vocab = ["a", "b", "c", "d"]
    for _ in range(50):
        train = [rng.choice(vocab) for _ in range(60)]
        sample = [rng.choice(vocab) for _ in range(25)]
        best = max((sample[i:j] for i in range(len(sample)) for j in range(i, len(sample) + 1)
                    if " " + " ".join(sample[i:j]) + " " in " " + " ".join(train) + " "), key=len)
        assert len(TrainingWords(" ".join(train)).longest_copy(sample)) == len(best)


def test_a_copied_passage_is_found_and_has_no_novel_ngrams():
    # "away" touches the end (maybe cut) and is left out; copies are case-sensitive ("The dog" != "the dog")
    result = memorisation(["Once: the dog sat on the log, and the cat ran away"], TRAINING, prompt="Once:")
    assert result.words == 10
    assert result.longest_copy == 9 and result.longest_copy_text == "dog sat on the log and the cat ran"
    assert result.novel_ngrams == {2: 0.0, 3: pytest.approx(1 / 8), 4: pytest.approx(1 / 7)}


def test_words_never_seen_are_all_novel():
    result = memorisation(["zebra quokka ibis newt yak, "], TRAINING)
    assert result.longest_copy == 0 and result.words == 5
    assert result.novel_ngrams == {2: 1.0, 3: 1.0, 4: 1.0}
    assert memorisation(["zebra"], TRAINING).novel_ngrams[2] is None  # no bigram to judge


def test_eval_reports_memorisation_and_keeps_its_json_keys(trained_run):
    out = subprocess.run([sys.executable, "-m", "tinylm", "eval", str(trained_run.run_dir), "--memorisation",
                          "--samples", "2", "--max-new-tokens", "80", "--json"],
                         capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(out.stdout)
    assert {"loss", "perplexity", "bits_per_char", "tokens"} <= result.keys()
    mem = result["memorisation"]
    assert mem["samples"] == 2 and mem["longest_copy"] >= 1 and set(mem["novel_ngrams"]) == {"2", "3", "4"}
    assert 0.0 <= mem["novel_ngrams"]["4"] <= 1.0
