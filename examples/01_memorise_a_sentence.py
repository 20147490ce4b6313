#!/usr/bin/env python3
"""Example 1: a character-level LSTM learns one short sentence by heart, then writes it back.

The first exercise of a course on generative text models: before a model can generalise, check that it
can at least *memorise*. If a small LSTM cannot reproduce a single sentence with greedy decoding, something
is wrong with the data, the model or the training loop.

    python examples/01_memorise_a_sentence.py                   # under a minute on a laptop CPU
    TINYLM_QUICK=1 python examples/01_memorise_a_sentence.py    # a few seconds (what the tests run)
    OUT=/tmp/memorise python examples/01_memorise_a_sentence.py

It writes a run directory to $OUT/run (default runs/examples/01_memorise_a_sentence/run): config.json,
tokenizer.json, model.safetensors, metrics.jsonl and loss.png (the loss falls towards zero). It prints the
greedy continuation of an empty prompt, and exits with status 1 if it is not the sentence.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import tinylm

SENTENCE = "To be, or not to be, that is the question."
QUICK = os.environ.get("TINYLM_QUICK", "0") not in ("", "0")
OUT = Path(os.environ.get("OUT", "runs/examples/01_memorise_a_sentence"))


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    # Line mode turns each line into one training example `<eos> sentence <eos>`: the model learns where the
    # sentence starts (after <eos>) and where it ends (the closing <eos>, at which generation stops).
    # The file holds the same line many times only so that an epoch is several optimizer steps instead of
    # one; the model still sees exactly one sentence.
    corpus = OUT / "sentence.txt"
    corpus.write_text((SENTENCE + "\n") * 64, encoding="utf-8")

    config = tinylm.RunConfig(
        # Memorising is the goal, so the model is scored on the very sentence it trains on (val_source):
        # a validation loss near 0 means "learned by heart".
        data=tinylm.DataConfig(source=str(corpus), val_source=str(corpus), lines=True, block_size=64),
        # A small model is plenty for 20 distinct characters; no dropout: we *want* it to overfit.
        model=tinylm.model_config("lstm", embed=16, hidden=64, layers=1, dropout=0.0),
        train=tinylm.TrainConfig(
            epochs=10 if QUICK else 25,  # 4 steps per epoch (64 lines / batch 16)
            batch_size=16,
            lr=1e-2,  # high for an LSTM, fine for a task this small
            warmup_steps=5,
            patience=0,  # no early stopping: the validation loss only falls here
            sample_tokens=60,
            seed=0,
        ),
    )
    run = tinylm.train(config, out=OUT / "run", overwrite=True, progress=False)

    # Greedy decoding always takes the most likely next character. An empty prompt starts after <eos>,
    # exactly where every training example started, and generation stops at the closing <eos>.
    text = run.generate("", greedy=True, max_new_tokens=2 * len(SENTENCE))
    losses = [record["val_loss"] for record in run.metrics]
    print(f"validation loss per epoch: {', '.join(f'{loss:.3f}' for loss in losses)}")
    print(f"greedy: {text!r}")
    print(f"loss curve: {OUT / 'run' / 'loss.png'}")
    if text != SENTENCE:
        print("the model has not memorised the sentence yet: train longer (more epochs)", file=sys.stderr)
        return 1
    print("memorised: the greedy output is the sentence, character for character")
    return 0


if __name__ == "__main__":
    sys.exit(main())
