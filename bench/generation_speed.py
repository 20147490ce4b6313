"""Generation speed (new tokens/s, batch 1, greedy, CPU) of tinylm's models, fp32 and through the fast path
(tinylm/machine/fast_inference.py: bf16 or int8 Linear layers), against transformers' `generate()` on the same
weights exported with
`tinylm export`, in fp32 and in bf16, at each thread count.

    python bench/generation_speed.py                       # gpt-cpu, gpt-gpu and lstm; 1 and 2 threads
    python bench/generation_speed.py --models gpt-gpu --threads 1
    python bench/generation_speed.py --models gpt-gpu --threads 1 --extra   # + no cache, sliding

Models (random weights: speed does not depend on them; the vocabulary of Tiny Shakespeare's characters, 68):
the gpt-cpu and gpt-gpu presets' GPTs, and `tinylm train`'s default LSTM (2x256; no transformers
counterpart). From a one-token prompt, block_size - 1 new tokens (255 for the LSTM), so every method sees
the same contexts and transformers stays inside its learned positions. Rows:
- tinylm fp32:     generate_ids with precision="fp32": the model as trained, one position per token (KV cache);
- tinylm bf16:     precision="bf16": the inference copy, Linear layers packed in bf16 by oneDNN;
- tinylm int8:     precision="int8": the inference copy with weight-only int8 Linear layers;
- tinylm auto:     precision="auto": what tinylm picks at this thread count (measured once per CPU, threads and
                   model shape, cached in the cache folder: set TINYLM_CACHE_DIR to a new folder to measure again);
- hf fp32, bf16:   GPT2LMHeadModel.generate() on the exported weights (its own KV cache), the model in fp32,
                   then converted to bf16 (everything in bf16: the fair comparison for our bf16 row);
- with --extra:    tinylm fp32 without cache (the whole context re-run per token, nanoGPT's generate), and
                   tinylm at the precision `auto` picks for 4 x block_size tokens, sliding past the block.
Ratios are against transformers fp32 measured in the same run and thread count; best of --repeats runs
(no cache: one), the methods taking turns. Both wall-clock and CPU-time rates are printed: on a shared
machine the CPU-time one (at 1 thread) is the steadier figure; at 2 threads CPU time counts both threads, so
compare wall times there, and only on an otherwise idle machine (a busy core stalls every parallel kernel).
Before the timings, the precision cost: max |logit difference| against fp32 over a greedy sequence, and how
many greedy tokens agree with fp32's.
"""

from __future__ import annotations

import argparse
import os
import platform
import string
import tempfile
import time
from pathlib import Path

import torch

from tinylm.config import DataConfig, RunConfig
from tinylm.generation.sampling import SamplingConfig, generate_ids
from tinylm.loading import LoadedModel
from tinylm.machine.devices import cpu_capability, cpu_model, native_bf16_cpu
from tinylm.machine.fast_inference import model_for_generation, resolve_precision
from tinylm.models import build_model, model_config
from tinylm.publishing.export import export_transformers
from tinylm.tokenizers import TokenizerConfig, build_tokenizer
from tinylm.training.presets import PRESETS

# 65 characters, like Tiny Shakespeare's: with <pad>, <unk>, <eos> a vocabulary of 68
ALPHABET = string.ascii_letters + " \n!$&',-.3:;?"
MODELS = ["gpt-cpu", "gpt-gpu", "lstm"]


def best_rates(runs: dict[str, tuple], repeats: int) -> dict[str, tuple[float, float]]:
    """label -> (tokens per wall second, tokens per CPU second) of the fastest of `repeats` calls of each
    run() in `runs` (label -> (run, tokens, repeats cap)). The methods take turns, one call each per round,
    so that a busy moment of a shared machine slows them all rather than one."""
    best = {label: (float("inf"), float("inf")) for label in runs}
    for round_ in range(repeats):
        for label, (run, tokens, cap) in runs.items():
            if round_ >= cap:
                continue
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            best[label] = min(best[label], (time.perf_counter() - wall, time.process_time() - cpu))
    return {label: (runs[label][1] / wall, runs[label][1] / cpu) for label, (wall, cpu) in best.items()}


def tinylm_generate(model, n: int, precision: str) -> list[int]:
    config = SamplingConfig(max_new_tokens=n, greedy=True, stop_at_eos=False, precision=precision)
    tokens = list(generate_ids(model, [0], config))
    assert len(tokens) == n
    return tokens


@torch.no_grad()
def tinylm_no_cache(model, n: int) -> None:
    ids = torch.zeros(1, 1, dtype=torch.long)
    for _ in range(n):
        logits, _ = model(ids[:, -model.config.block_size :], None)  # the whole context, every token
        ids = torch.cat([ids, logits[:, -1].argmax(-1, keepdim=True)], dim=1)


@torch.no_grad()
def hf_generate(hf, n: int, pad_id: int) -> None:
    # both bounds on new tokens: the exported generation_config sets its own max_new_tokens, which would win
    # over max_length; 1 + n <= the block, inside the learned positions
    out = hf.generate(torch.zeros(1, 1, dtype=torch.long), attention_mask=torch.ones(1, 1, dtype=torch.long),
                      max_new_tokens=n, min_new_tokens=n, do_sample=False, use_cache=True, pad_token_id=pad_id)
    assert out.size(1) == 1 + n


def build(name: str, tokenizer) -> tuple[torch.nn.Module, RunConfig]:
    torch.manual_seed(0)
    if name == "lstm":
        config = RunConfig(model=model_config("lstm", vocab_size=tokenizer.vocab_size))
    else:
        preset = PRESETS[name]
        fields = {k: v for k, v in preset["model"].items() if k != "name"}
        data = DataConfig(block_size=preset["data"]["block_size"])
        config = RunConfig(data=data, model=model_config("gpt", vocab_size=tokenizer.vocab_size, **fields))
    return build_model(config.model).eval(), config


@torch.inference_mode()
def logit_difference(model, other, ids: torch.Tensor) -> float:
    """Max |logit difference| of `other` against `model` over ids (one pass; the LSTM carries its state)."""
    ours = model(ids)[0] if not hasattr(model, "generate") else model(ids).logits
    theirs = other(ids)[0] if not hasattr(other, "generate") else other(ids).logits
    return (theirs.float() - ours.float()).abs().max().item()


def agreement(a: list[int], b: list[int]) -> str:
    first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)
    return f"{sum(x == y for x, y in zip(a, b))}/{len(a)}" + ("" if first is None else f" (from token {first + 1} on)")


def bench_model(name: str, tokenizer, threads: list[int], repeats: int, extra: bool) -> None:
    model, config = build(name, tokenizer)
    gpt = name != "lstm"
    block = config.model.block_size if gpt else 256
    n = block - 1
    hf = hf_bf16 = None
    if gpt:
        import transformers

        with tempfile.TemporaryDirectory() as folder:
            export_transformers(LoadedModel(model, tokenizer, config), Path(folder))
            hf = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
            hf_bf16 = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).eval()
    reference = tinylm_generate(model, n, "fp32")
    ids = torch.tensor([[0, *reference]])
    with torch.inference_mode():
        logits = model(ids)[0]
    print(f"\n{name}: {model.describe()}, {model.num_parameters():,} parameters; {n} new tokens")
    print(f"  precision cost over the fp32 greedy text ({ids.size(1)} positions; logits std "
          f"{logits.std().item():.3f}, range {(logits.max() - logits.min()).item():.2f}): max |logit - fp32's|, "
          "greedy tokens equal to fp32's")
    for precision in ("bf16", "int8"):
        fast = model_for_generation(model, precision)
        print(f"    tinylm {precision}: {logit_difference(model, fast, ids):.4f}, "
              f"{agreement(reference, tinylm_generate(model, n, precision))}")
    if hf is not None:
        print(f"    transformers bf16: {logit_difference(hf, hf_bf16, ids):.4f}")
    for count in threads:
        torch.set_num_threads(count)
        auto = resolve_precision(model, "auto")  # measured here the first time (see the docstring)
        for precision in ("fp32", "bf16", "int8", "auto"):
            tinylm_generate(model, 8, precision)  # warm-up: oneDNN builds its kernels on first use
        runs = {
            "tinylm fp32 (KV cache)": (lambda: tinylm_generate(model, n, "fp32"), n, repeats),
            "tinylm bf16 (fast path)": (lambda: tinylm_generate(model, n, "bf16"), n, repeats),
            "tinylm int8 (fast path)": (lambda: tinylm_generate(model, n, "int8"), n, repeats),
            f"tinylm auto (-> {auto})": (lambda: tinylm_generate(model, n, "auto"), n, repeats),
        }
        if extra and gpt:
            runs["tinylm fp32, no cache"] = (lambda: tinylm_no_cache(model, n), n, 1)
        if extra:
            runs[f"tinylm {auto}, {4 * block} tokens (sliding)"] = (
                lambda: tinylm_generate(model, 4 * block, auto), 4 * block, repeats)
        if gpt:
            hf_generate(hf, 8, tokenizer.pad_id)
            hf_generate(hf_bf16, 8, tokenizer.pad_id)
            runs["transformers generate() fp32"] = (lambda: hf_generate(hf, n, tokenizer.pad_id), n, repeats)
            runs["transformers generate() bf16"] = (lambda: hf_generate(hf_bf16, n, tokenizer.pad_id), n, repeats)
        rates = best_rates(runs, repeats)
        base_label = "transformers generate() fp32" if gpt else "tinylm fp32 (KV cache)"
        base_wall, base_cpu = rates[base_label]
        print(f"  {count} thread{'s' if count > 1 else ''}: {'':31} {'wall tok/s':>10} {'CPU tok/s':>10}  "
              f"vs {base_label.replace(' (KV cache)', '')} (wall, CPU)")
        for label, (wall, cpu) in rates.items():
            print(f"    {label:40} {wall:10,.1f} {cpu:10,.1f}  {wall / base_wall:5.2f}x, {cpu / base_cpu:5.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=MODELS, choices=MODELS)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to measure (1 2)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--extra", action="store_true", help="also tinylm without cache, and sliding past the block")
    args = p.parse_args()
    import transformers

    transformers.logging.set_verbosity_error()  # no progress bars or advice between the figures
    transformers.logging.disable_progress_bar()
    overrides = " ".join(f"{k}={os.environ[k]}" for k in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY",
                                                          "TINYLM_CPU_BF16", "MKL_ENABLE_INSTRUCTIONS")
                         if k in os.environ)
    print(f"batch 1, greedy; {cpu_model()} ({platform.machine()}, {os.cpu_count()} CPUs), capability "
          f"{cpu_capability()}, native bf16: {native_bf16_cpu()}; {overrides or 'no overrides'}; "
          f"torch {torch.__version__}, transformers {transformers.__version__}")
    tokenizer = build_tokenizer(TokenizerConfig("char"), ALPHABET)
    for name in args.models:
        bench_model(name, tokenizer, args.threads, args.repeats, args.extra)


if __name__ == "__main__":
    main()
