"""Generation speed (new tokens/s, batch 1, greedy, CPU) of tinylm's GPT with and without its KV cache,
and of the same weights exported to transformers and run with its `generate()`.

    python bench/generation_speed.py                       # gpt-cpu and gpt-gpu sizes, torch's thread count
    python bench/generation_speed.py --presets gpt-cpu --threads 1

For each preset's model (random weights: speed does not depend on them; the vocabulary of Tiny
Shakespeare's characters), from a one-token prompt, block_size - 1 new tokens so every method sees the
same contexts and transformers stays inside its learned positions:
- cached:    tinylm's generation (generate_ids), one position per token with the KV cache;
- no cache:  the whole context re-run for every token (nanoGPT's generate, cropping to the block);
- hf:        transformers' GPT2LMHeadModel.generate() on the exported weights (its own KV cache);
- sliding:   tinylm cached for 4 x block_size tokens, past the block (re-encoding half a block when full).
Ratios are against tinylm's cached speed measured in the same run; best of --repeats runs (no cache: one).
Both wall-clock and CPU-time rates are printed: on a shared machine the CPU-time one (1 thread) is steadier.
"""

from __future__ import annotations

import argparse
import string
import tempfile
import time
from pathlib import Path

import torch

from tinylm.config import DataConfig, RunConfig
from tinylm.export import export_transformers
from tinylm.generation import SamplingConfig, generate_ids
from tinylm.models import build_model, model_config
from tinylm.presets import PRESETS
from tinylm.runs import LoadedModel
from tinylm.tokenizers import TokenizerConfig, build_tokenizer

# 65 characters, like Tiny Shakespeare's: with <pad>, <unk>, <eos> a vocabulary of 68
ALPHABET = string.ascii_letters + " \n!$&',-.3:;?"


def best_rate(run, tokens: int, repeats: int) -> tuple[float, float]:
    """(tokens per wall second, tokens per CPU second) of the fastest of `repeats` calls of run().
    On a shared machine the CPU-time rate (at 1 thread) is the steadier figure."""
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return tokens / best[0], tokens / best[1]


def tinylm_cached(model, n: int) -> None:
    config = SamplingConfig(max_new_tokens=n, greedy=True, stop_at_eos=False)
    produced = sum(1 for _ in generate_ids(model, [0], config))
    assert produced == n


@torch.no_grad()
def tinylm_no_cache(model, n: int) -> None:
    ids = torch.zeros(1, 1, dtype=torch.long)
    for _ in range(n):
        logits, _ = model(ids[:, -model.config.block_size :], None)  # the whole context, every token
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)


@torch.no_grad()
def hf_generate(hf, n: int, pad_id: int) -> None:
    # max_length (not max_new_tokens): the exported generation_config caps max_length at the block
    out = hf.generate(torch.zeros(1, 1, dtype=torch.long), max_length=1 + n, min_length=1 + n, do_sample=False,
                      use_cache=True, pad_token_id=pad_id)
    assert out.size(1) == 1 + n


def bench_preset(name: str, tokenizer, repeats: int) -> None:
    import transformers

    preset = PRESETS[name]
    fields = {k: v for k, v in preset["model"].items() if k != "name"}
    data = DataConfig(block_size=preset["data"]["block_size"])
    config = RunConfig(data=data, model=model_config("gpt", vocab_size=tokenizer.vocab_size, **fields))
    torch.manual_seed(0)
    model = build_model(config.model).eval()
    block = config.model.block_size
    n = block - 1
    with tempfile.TemporaryDirectory() as folder:
        export_transformers(LoadedModel(model, tokenizer, config), Path(folder))
        hf = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()

    tinylm_cached(model, 8)  # warm-up
    hf_generate(hf, 8, tokenizer.pad_id)
    rates = {
        "tinylm, KV cache": best_rate(lambda: tinylm_cached(model, n), n, repeats),
        "tinylm, no cache": best_rate(lambda: tinylm_no_cache(model, n), n, 1),
        "transformers generate()": best_rate(lambda: hf_generate(hf, n, tokenizer.pad_id), n, repeats),
        f"tinylm, KV cache, {4 * block} tokens (sliding)": best_rate(
            lambda: tinylm_cached(model, 4 * block), 4 * block, repeats),
    }
    print(f"\n{name}: {model.describe()}, {model.num_parameters():,} parameters; {n} new tokens")
    print(f"  {'':40} {'wall tok/s':>10} {'CPU tok/s':>10}  vs KV cache (wall, CPU)")
    base_wall, base_cpu = rates["tinylm, KV cache"]
    for label, (wall, cpu) in rates.items():
        print(f"  {label:40} {wall:10,.1f} {cpu:10,.1f}  {wall / base_wall:.2f}x, {cpu / base_cpu:.2f}x")
    no_wall, no_cpu = rates["tinylm, no cache"]
    hf_wall, hf_cpu = rates["transformers generate()"]
    print(f"  KV cache speed-up: {base_wall / no_wall:.2f}x wall, {base_cpu / no_cpu:.2f}x CPU; "
          f"tinylm cached / transformers: {base_wall / hf_wall:.2f}x wall, {base_cpu / hf_cpu:.2f}x CPU")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["gpt-cpu", "gpt-gpu"], choices=["gpt-cpu", "gpt-gpu"])
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import transformers

    print(f"batch 1, greedy, {args.threads} threads, torch {torch.__version__}, "
          f"transformers {transformers.__version__}")
    tokenizer = build_tokenizer(TokenizerConfig("char"), ALPHABET)
    for name in args.presets:
        bench_preset(name, tokenizer, args.repeats)

if __name__ == "__main__":
    main()
