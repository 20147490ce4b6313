"""Training throughput (tokens/s) of a model on this machine's CPU, bf16 autocast against fp32.

    python bench/train_throughput.py                       # the default LSTM (2x256), batch 64 x 128
    python bench/train_throughput.py --model gru --hidden 384 --layers 1 --threads 1

Measures full optimizer steps (forward, loss, backward, clip, AdamW) on random tokens after warm-up
steps; prints tokens/s for each precision and the ratio against fp32 measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from tinylm.models import build_model, model_config


def measure(model, vocab: int, batch: int, block: int, steps: int, bf16: bool) -> float:
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x = torch.randint(0, vocab, (batch, block))
    y = torch.randint(0, vocab, (batch, block))
    for i in range(steps + 3):
        if i == 3:
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits, _ = model(x)
        loss = F.cross_entropy(logits.reshape(-1, vocab).float(), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    return batch * block * steps / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="lstm")
    p.add_argument("--layers", type=int)
    p.add_argument("--hidden", type=int)
    p.add_argument("--embed", type=int)
    p.add_argument("--vocab", type=int, default=68, help="68 = Tiny Shakespeare char vocabulary + specials")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = model_config(args.model, vocab_size=args.vocab, layers=args.layers, hidden=args.hidden, embed=args.embed)
    model = build_model(config)
    print(f"{args.model} {config.layers}x{config.hidden} embed {config.embed}: {model.num_parameters():,} parameters; "
          f"batch {args.batch_size} x {args.block_size}, {args.threads} threads, torch {torch.__version__}")
    fp32 = measure(model, args.vocab, args.batch_size, args.block_size, args.steps, bf16=False)
    bf16 = measure(model, args.vocab, args.batch_size, args.block_size, args.steps, bf16=True)
    print(f"fp32            {fp32:10,.0f} tokens/s  (1.00x)")
    print(f"bf16 autocast   {bf16:10,.0f} tokens/s  ({bf16 / fp32:.2f}x)  (auto: only with native bf16)")


if __name__ == "__main__":
    main()
