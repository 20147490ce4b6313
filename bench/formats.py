"""One GPT, every runtime it exports to: greedy parity and generation speed (batch 1, CPU) of tinylm itself,
llama.cpp (GGUF f32 and q8_0, through llama-cpp-python), ONNX Runtime (the KV-cache export) and transformers'
generate(), at 1 and 2 threads, in one run.

    pip install llama-cpp-python      # once: it compiles llama.cpp (~20 minutes on 2 cores); not in tinylm's extras
    python bench/formats.py                          # a char GPT and a BPE GPT of the gpt-gpu shape (10.8M)
    python bench/formats.py --shape gpt-cpu --tokens 100 --threads 1

Each model is the gpt-gpu preset's shape (6 layers x 384, block 256), trained for --steps steps on Tiny
Shakespeare through `tinylm train` (so that its text is text and its greedy choices are not near ties),
then exported with `tinylm export` to each format. From the prompt "ROMEO:", --tokens new tokens (200), greedy:
- parity: whether each runtime's greedy ids equal tinylm's fp32 greedy ids (the exact model), and from
  which token on they part if not (q8_0 and tinylm's auto fast path round the weights: they may);
- tokens/s: the median of --rounds (7) timed generations, the runtimes taking turns, new tokens / wall seconds
  from the prompt to the last token (prompt processing included, the same for all).
Runtimes not installed are left out with the command that installs them. Needs the corpora
(TINYLM_DATA_DIR) for training.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import tinylm
from tinylm.generation.sampling import SamplingConfig, generate_ids
from tinylm.machine.devices import cpu_capability, cpu_model, native_bf16_cpu
from tinylm.machine.fast_inference import resolve_precision
from tinylm.models import model_config
from tinylm.training.presets import PRESETS

PROMPT = "ROMEO:"


def train(folder: Path, tokenizer: str, shape: str, steps: int) -> Path:
    preset = PRESETS[shape]
    fields = {k: v for k, v in preset["model"].items() if k != "name"}
    config = tinylm.RunConfig(
        data=tinylm.DataConfig(source="shakespeare", block_size=preset["data"]["block_size"]),
        tokenizer=tinylm.TokenizerConfig(kind=tokenizer, vocab_size=512 if tokenizer == "bpe" else None),
        model=model_config("gpt", **fields),
        train=tinylm.TrainConfig(max_steps=steps, epochs=1, batch_size=16, lr=1e-3, warmup_steps=10,
                                 sample_tokens=0),
    )
    out = folder / f"{tokenizer}-run"
    tinylm.train(config, out=out, progress=False, echo=lambda s: None)
    return out


def tinylm_runner(run, prompt: list[int], n: int, precision: str) -> Callable[[], list[int]]:
    config = SamplingConfig(max_new_tokens=n, greedy=True, stop_at_eos=False, precision=precision)
    return lambda: list(generate_ids(run.module, prompt, config))


def llama_runner(path: Path, n_ctx: int, prompt: list[int], n: int, threads: int) -> Callable[[], list[int]]:
    import llama_cpp

    llm = llama_cpp.Llama(str(path), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads, n_batch=n_ctx,
                          verbose=bool(os.environ.get("VERBOSE")))

    def run() -> list[int]:
        out = []
        for token in llm.generate(prompt, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
            out.append(int(token))
            if len(out) == n:
                return out
        return out

    return run


def onnx_runner(folder: Path, prompt: list[int], n: int, threads: int) -> Callable[[], list[int]]:
    from tinylm.publishing.onnx import OnnxGenerator

    generator = OnnxGenerator(folder, threads=threads)
    return lambda: generator.generate(prompt, n, stop_at_eos=False)


def transformers_runner(folder: Path, prompt: list[int], n: int) -> Callable[[], list[int]]:
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder)).eval()
    ids = torch.tensor([prompt])

    @torch.no_grad()
    def run() -> list[int]:
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
                             do_sample=False, pad_token_id=0)
        return out[0, len(prompt):].tolist()

    return run


def parity(reference: list[int], ids: list[int]) -> str:
    first = next((i for i, (a, b) in enumerate(zip(reference, ids)) if a != b), None)
    if first is None and len(ids) == len(reference):
        return "yes"
    return f"no (from token {first + 1 if first is not None else len(ids) + 1})"


def exports(run_dir: Path, folder: Path) -> dict[str, Path]:
    """format label -> exported file or folder; formats whose package is missing are left out."""
    made = {}
    for label, fmt, options in (("gguf f32", "gguf", {"outtype": "f32"}), ("gguf q8_0", "gguf", {"outtype": "q8_0"}),
                                ("onnx", "onnx", {}), ("transformers", "transformers", {})):
        try:
            out = tinylm.export_run(run_dir, folder / label.replace(" ", "-"), format=fmt, **options)
        except ModuleNotFoundError as e:
            print(f"  ({label}: {e.name} is not installed: pip install 'tinylm[{fmt}]')")
            continue
        made[label] = out / "model.gguf" if fmt == "gguf" else out
    return made


def bench(run_dir: Path, tokens: int, threads: list[int], rounds: int) -> None:
    run = tinylm.load(run_dir, precision="fp32")
    prompt = run.tokenizer.encode(PROMPT)
    n = min(tokens, run.module.config.block_size - len(prompt))  # llama.cpp and transformers stop at the block
    with tempfile.TemporaryDirectory() as tmp:
        made = exports(run_dir, Path(tmp))
        reference = tinylm_runner(run, prompt, n, "fp32")()
        print(f"\n{run.tokenizer.kind} GPT: {run.module.describe()}, {run.module.num_parameters():,} parameters, "
              f"vocabulary {run.tokenizer.vocab_size}; {n} new tokens from {PROMPT!r}")
        print(f"  tinylm fp32 greedy text: {run.tokenizer.decode(reference)[:70]!r}...")
        rows: dict[str, dict] = {}
        for count in threads:
            torch.set_num_threads(count)
            runners = {f"tinylm auto (-> {resolve_precision(run.module, 'auto')})":
                       tinylm_runner(run, prompt, n, "auto"), "tinylm fp32": tinylm_runner(run, prompt, n, "fp32")}
            for label in ("gguf f32", "gguf q8_0"):
                if label in made:
                    try:
                        runners[f"llama.cpp {label[5:]}"] = llama_runner(made[label], run.module.config.block_size,
                                                                         prompt, n, count)
                    except ModuleNotFoundError:
                        print("  (llama.cpp: pip install llama-cpp-python, once; it compiles for ~20 minutes)")
                        break
            if "onnx" in made:
                runners["ONNX Runtime"] = onnx_runner(made["onnx"], prompt, n, count)
            if "transformers" in made:
                runners["transformers generate()"] = transformers_runner(made["transformers"], prompt, n)
            times: dict[str, list[float]] = {label: [] for label in runners}
            for label, runner in runners.items():  # warm-up, and each runtime's greedy ids
                rows.setdefault(label, {})["parity"] = parity(reference, runner())
            for _ in range(rounds):
                for label, runner in runners.items():
                    start = time.perf_counter()
                    runner()
                    times[label].append(time.perf_counter() - start)
            for label, seconds in times.items():
                rows[label][count] = n / statistics.median(seconds)
        base = rows["tinylm fp32"]
        print("  | runtime | greedy = tinylm fp32 | " + " | ".join(f"tok/s {c} thr (x fp32)" for c in threads) + " |")
        print("  | --- | --- |" + " --- |" * len(threads))
        for label, row in rows.items():
            rates = " | ".join(f"{row[c]:,.0f} ({row[c] / base[c]:.2f}x)" for c in threads)
            print(f"  | {label} | {row['parity']} | {rates} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shape", default="gpt-gpu", choices=["gpt-cpu", "gpt-gpu"], help="the preset's GPT shape")
    p.add_argument("--tokenizers", nargs="+", default=["char", "bpe"], choices=["char", "bpe"])
    p.add_argument("--steps", type=int, default=60, help="training steps before the export (60)")
    p.add_argument("--tokens", type=int, default=200, help="new tokens per generation (200)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--rounds", type=int, default=7, help="timed generations per runtime (median; 7)")
    p.add_argument("--runs", nargs="*", type=Path, help="trained GPT runs to use instead of training new ones")
    p.add_argument("--keep", type=Path, help="train the runs into this folder and keep them (reused when there)")
    args = p.parse_args()
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    print(f"batch 1, greedy; {cpu_model()} ({platform.machine()}, {os.cpu_count()} CPUs), capability "
          f"{cpu_capability()}, native bf16: {native_bf16_cpu()}; torch {torch.__version__}")
    np.set_printoptions(precision=3)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        runs = args.runs or [folder / f"{kind}-run" if (folder / f"{kind}-run" / "summary.json").is_file()
                             else train(folder, kind, args.shape, args.steps) for kind in args.tokenizers]
        for run_dir in runs:
            bench(run_dir, args.tokens, args.threads, args.rounds)


if __name__ == "__main__":
    main()
