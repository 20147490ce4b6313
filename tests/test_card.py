"""The model card's builder (tinylm.publishing.card.build_card) is pure: it formats the facts it is given, with no
run directory, no file reads and no model calls."""

from __future__ import annotations

import dataclasses

import pytest

import tinylm
from tinylm.publishing import card
from tinylm.publishing.card import CardFacts, build_card

pytest.importorskip("huggingface_hub")  # the card's YAML metadata is huggingface_hub's ModelCardData


def hand_made_facts(**changes) -> CardFacts:
    """Facts of a run that does not exist: every value is made up here, so the card can show no other."""
    metrics = [{"epoch": 1, "step": 7, "train_loss": 3.5, "val_loss": 2.75, "val_perplexity": 15.64,
                "val_bits_per_char": 3.967, "tokens_per_s": 12345.0},
               {"epoch": 2, "step": 14, "train_loss": 2.5, "val_loss": 1.2345, "val_perplexity": 3.4367,
                "val_bits_per_char": 1.781, "tokens_per_s": 23456.0}]
    facts = CardFacts(
        repo_id="carol/made-up-model", license="mit", languages=["en"], datasets=None, description=None,
        user_tags=["handmade"], transformers=False, files=["README.md", "notes/made-up-file.txt"],
        finetuned=False, base_id=None, base_name="a pretrained model", family="lstm",
        architecture="lstm 1 layer x 8 wide (made up)", model_tag="lstm", parameters=4321,
        model_settings=[("hidden", 8)], trainable=True, tokenizer_kind="char", vocab_size=42,
        corpus="Made-Up Corpus", own_validation=None, val_corpus=None,
        data=tinylm.DataConfig(source="made-up.txt", block_size=16, stride=16),
        train=tinylm.TrainConfig(epochs=2, sample_prompt="ZORBA:", sample_tokens=40, seed=11),
        metrics=metrics, summary={"stop_reason": "epochs", "train_seconds": 3.0},
        wandb_urls=None, run_version="0.0.1", card_version="0.0.2",
        samples=[(0.5, "ZORBA: a made-up sample, cool"), (0.8, "ZORBA: ```warm``` sample"), (1.0, "ZORBA: hot")])
    return dataclasses.replace(facts, **changes)


def test_build_card_shows_the_given_facts_and_reads_nothing_else(tmp_path, monkeypatch):
    # Everything that gathers facts from a run fails here, and the working folder is empty.
    for gatherer in ("load_run", "read_jsonl", "run_config_file", "_wandb_urls", "_repo_files", "_corpus"):
        monkeypatch.setattr(card, gatherer, lambda *a, **k: pytest.fail("build_card gathered facts itself"))
    monkeypatch.chdir(tmp_path)

    text = build_card(hand_made_facts())
    assert text.startswith("---\n") and "\n# made-up-model\n" in text  # the title: the repo's name
    assert "license: mit" in text and "- handmade" in text and "value: 3.4367" in text  # YAML, best epoch
    assert "Best validation loss: 1.2345 nats/token (perplexity 3.44" in text and "after epoch 2" in text
    assert "| 2 | 14 | 2.5000 | 1.2345 | 3.44 | 1.781 | 23,456 |" in text  # the metrics row of epoch 2
    assert "trained from scratch with tinylm on Made-Up Corpus" in text and "4,321 parameters" in text
    assert "**temperature 0.5**\n\n```text\nZORBA: a made-up sample, cool\n```" in text  # the sample, as given
    assert "````text\nZORBA: ```warm``` sample\n````" in text  # a longer fence than the sample's backticks
    assert "- `notes/made-up-file.txt`: " in text and "- `README.md`: this card" in text  # the file list
    assert "tinylm 0.0.1 or later" in text and "written by tinylm 0.0.2" in text
    assert "With transformers only" not in text
    assert build_card(hand_made_facts()) == text  # the same facts, the same card


def test_build_card_takes_the_transformers_usage_numbers_from_the_facts():
    text = build_card(hand_made_facts(transformers=True, context=32, prompt_tokens=6))
    assert "library_name: transformers" in text and "- text: 'ZORBA:'" in text  # the widget's prompt
    assert 'generator("ZORBA:", max_new_tokens=26, ' in text  # 32 positions less the prompt's 6 tokens
    assert "allow at most 32 tokens there" in text
