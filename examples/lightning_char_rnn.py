#!/usr/bin/env python3
"""The Shakespeare exercise as it is written for PyTorch Lightning: `LitCharRNN` trained by `pl.Trainer` with
early stopping (patience 5) and a checkpoint of the best epoch, on maxlen-40 / step-3 windows; the result is
a tinylm run directory.

    pip install 'tinylm[lightning]'
    python examples/lightning_char_rnn.py --out runs/lit-shakespeare                  # Tiny Shakespeare
    python examples/lightning_char_rnn.py --data gutenberg:1342 --out runs/lit-pride  # another book (online)
    python examples/lightning_char_rnn.py --data book.txt --strip-gutenberg --max-steps 200 --out runs/lit-book

Then, like any run:

    tinylm sample runs/lit-shakespeare --prompt "ROMEO:" --temperature 0.5
    tinylm eval runs/lit-shakespeare

DIR holds config.json, the tokenizer, model.safetensors (the best epoch), metrics.jsonl (one line per epoch),
loss.png, summary.json (early_stopping_epoch: the epoch at which the patience ran out) and lightning/best.ckpt
(Lightning's own checkpoint, to continue with trainer.fit(..., ckpt_path=...)).
"""

from __future__ import annotations

import argparse
import sys

import tinylm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="shakespeare", help="a text file, a built-in corpus or gutenberg:ID")
    parser.add_argument("--strip-gutenberg", action="store_true", help="cut the Project Gutenberg licence text")
    parser.add_argument("--out", required=True, help="the run directory to write")
    parser.add_argument("--max-epochs", type=int, default=50, help="early stopping usually ends it sooner")
    parser.add_argument("--max-steps", type=int, default=-1, help="stop after this many steps (default: no limit)")
    parser.add_argument("--patience", type=int, default=5, help="epochs without a better validation loss")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    parser.add_argument("--seed", type=int, default=1337)
    args = parser.parse_args(argv)
    try:
        import lightning.pytorch as pl

        from tinylm.training.lightning import LitCharRNN, TextDataModule, callbacks, prepare_out_dir, save_run

        prepare_out_dir(args.out, args.overwrite)  # an --out holding something else fails now, not after training
        pl.seed_everything(args.seed, verbose=False)
        # The exercise's data: windows of maxlen = 40 characters every step = 3 characters; the target of each
        # window is the one character that follows it (many-to-one). The last 10% of the text validates.
        data = TextDataModule.exercise(args.data, strip_gutenberg=args.strip_gutenberg,
                                       batch_size=args.batch_size, seed=args.seed)
        print(f"{args.data}: {len(data.train_text):,} training characters, vocabulary of {data.vocab_size}, "
              f"{len(data.train_examples):,} windows")
        model = LitCharRNN(data.vocab_size, embed_dim=64, hidden_size=128, dropout=0.2, lr=5e-3)
        # EarlyStopping(monitor="val_loss", patience=5), ModelCheckpoint(monitor="val_loss") into OUT/lightning,
        # and tinylm's recorder (metrics per epoch, the best weights) for the run directory.
        recorder, early_stopping, checkpoint = callbacks(args.out, patience=args.patience, overwrite=args.overwrite)
        trainer = pl.Trainer(max_epochs=args.max_epochs, max_steps=args.max_steps, gradient_clip_val=1.0,
                             callbacks=[recorder, early_stopping, checkpoint], logger=False,
                             num_sanity_val_steps=0)
        trainer.fit(model, datamodule=data)
        save_run(model, data, args.out, recorder, trainer=trainer)
    except tinylm.TinyLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if early_stopping.stopped_epoch:
        print(f"early stopping at epoch {early_stopping.stopped_epoch + 1}: no better validation loss for "
              f"{args.patience} epochs")
    print(f"best validation loss {recorder.best_val_loss:.4f} at epoch {recorder.best_epoch}; "
          f"run directory: {args.out}")
    run = tinylm.load(args.out)
    print(run.generate(run.config.train.sample_prompt, max_new_tokens=200, temperature=0.5, seed=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
