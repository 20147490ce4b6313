"""`tinylm prepare`: tokenize a large corpus once into memory-mapped token files (`tinylm train --data DIR`)."""

from __future__ import annotations

import argparse
import json


def add_parser(sub) -> None:
    p = sub.add_parser("prepare", help="tokenize a corpus once into memory-mapped token files for training",
                       description="Stream SOURCE (a file, a folder of .txt, a built-in corpus or hf:DATASET), build "
                                   "the tokenizer from its training part and write DIR/train.bin and val.bin "
                                   "(token ids) with tokens.json and the tokenizer. Then: tinylm train --data DIR; "
                                   "training reads only the windows of each batch, so its memory does not grow "
                                   "with the corpus.")
    p.add_argument("source", metavar="SOURCE", help="file, folder of .txt, built-in corpus (shakespeare, ...), "
                                                    "hf:DATASET or gutenberg:ID")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write (it appears whole or not at all)")
    p.add_argument("--tokenizer", default="char", help="char (default), word, bpe, or a transformers tokenizer "
                                                       "name or folder (e.g. gpt2)")
    p.add_argument("--vocab-size", type=int, help="vocabulary size of learned tokenizers (bpe: 2048)")
    p.add_argument("--min-freq", type=int, default=1, help="minimum count of a symbol to enter the vocabulary (1)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the text, at its end, used for validation (0.1; unused when the corpus has "
                        "its own validation split)")
    p.add_argument("--encoding", default="utf-8", help="encoding of text files (utf-8)")
    p.add_argument("--overwrite", action="store_true", help="replace the prepared corpus already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print tokens.json (and the folder and MB/s) as JSON")


def run(args: argparse.Namespace) -> int:
    from ..data.tokenfile import prepare
    from ..tokenizers import TokenizerConfig

    config = TokenizerConfig(kind=args.tokenizer, vocab_size=args.vocab_size, min_freq=args.min_freq)
    prepared = prepare(args.source, config, args.out, val_fraction=args.val_fraction, encoding=args.encoding,
                       progress=not args.quiet and not args.json, overwrite=args.overwrite)
    if args.json:
        meta = {k: v for k, v in prepared.meta.items() if k != "head"}
        rate = meta["source_bytes"] / 1e6 / max(meta["seconds"], 1e-9)
        print(json.dumps({"path": str(prepared.path), **meta, "mb_per_s": round(rate, 3)}, indent=2))
    else:
        print(f"prepared {prepared.summary()}")
        print(f"train with: tinylm train --data {prepared.path}")
    return 0
