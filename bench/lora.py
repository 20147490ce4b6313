"""Full fine-tune against LoRA on the CPU: the same base, the same text, the same epochs, taking turns.

    python bench/lora.py                  # the default sizes (the base is pretrained once, then cached)
    python bench/lora.py --small          # a quick check: ~1.5 minutes on a busy 2-core CPU

The base. No network is needed, so the script makes its own: a GPT-2-shaped model (4 layers x 256, 4 heads,
context 128) with a byte-level BPE tokenizer of 2,048 tokens, both made from WikiText-2's validation text, and
pretrained on that text by `tinylm finetune` from random weights (cached in --base-dir, reused when its settings
match). Fine-tuning then adapts it to Tiny Shakespeare, text it has never seen: a small stand-in for GPT-2 on
one's own text, and the situation LoRA is meant for (a base that knows the language, a new style to learn).

Each fine-tune runs in its own process (`python bench/lora.py --child ...`), full and LoRA alternating, so that
its peak memory is its own: resource.getrusage(RUSAGE_SELF).ru_maxrss at its end, printed whole and as the
growth over the RSS just before `tinylm.finetune` was called (torch, transformers and peft imported by then in
both). Printed per configuration (medians over --repeats): the trainable parameters, training tokens/s (the
epochs' records: evaluation left out), training seconds, peak RSS, and the validation loss before, after the
same training time (the faster configuration's: the best epoch finished by then) and the best of the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(os.environ.get("TINYLM_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "data"))
SIZES = {  # base shape, pretraining, fine-tuning text
    "default": {"layers": 4, "width": 256, "heads": 4, "vocab": 2048, "pretrain_epochs": 2,
                "pretrain_chars": 1_200_000, "chars": 200_000, "epochs": 3},
    "small": {"layers": 2, "width": 128, "heads": 2, "vocab": 1024, "pretrain_epochs": 1,
              "pretrain_chars": 200_000, "chars": 40_000, "epochs": 2},
}
COMMON = {"batch_size": 16, "block_size": 128, "sample_tokens": 0, "precision": "fp32", "patience": 0}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="a smaller base and less text: checks the script")
    p.add_argument("--repeats", type=int, default=1, help="runs of each configuration, alternating")
    p.add_argument("--threads", type=int, default=1, help="torch threads of each fine-tune")
    p.add_argument("--lr-full", type=float, default=5e-4, help="learning rate of the full fine-tune")
    p.add_argument("--lr-lora", type=float, default=2e-3, help="learning rate of LoRA (rank 8, alpha 16, c_attn)")
    p.add_argument("--base-dir", type=Path, default=Path("runs/bench-lora"), help="where the base is kept")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    from transformers.utils import logging

    logging.disable_progress_bar()  # transformers' bars while weights load and save
    if args.child:
        return child(json.loads(args.child))
    size = SIZES["small" if args.small else "default"]
    print(f"CPU: {cpu_model()}, {os.cpu_count()} logical cores; load average {load()} (other jobs included)")
    base, text = make_base(args.base_dir, size), fine_tune_text(args.base_dir, size["chars"])
    configs = {"full": {"lr": args.lr_full}, "lora": {"lr": args.lr_lora, "lora": True}}
    results: dict[str, list[dict]] = {name: [] for name in configs}
    for repeat in range(args.repeats):
        order = list(configs) if repeat % 2 == 0 else list(reversed(configs))  # neither always goes first
        for name in order:
            config = {**COMMON, **configs[name], "epochs": size["epochs"], "threads": args.threads}
            out = args.base_dir / f"ft-{name}"
            shutil.rmtree(out, ignore_errors=True)  # the previous turn's run (a run holding adapter/ is not replaced)
            results[name].append(run_child(base, text, out, config))
            print(f"  {name} #{repeat + 1}: {results[name][-1]['train_seconds']:.1f} s", flush=True)
    print(table(results, configs, size, args))
    print(f"load average at the end {load()}")


# -- the base and the text ---------------------------------------------------------------------------------
def make_base(base_dir: Path, size: dict) -> Path:
    """The pretrained base (a tinylm fine-tune run, which `tinylm finetune` takes as a base), made once per size."""
    import tinylm
    from tinylm.training.finetune import FinetuneConfig

    stamp = {key: size[key] for key in ("layers", "width", "heads", "vocab", "pretrain_epochs", "pretrain_chars")}
    folder = base_dir / f"base-{size['layers']}x{size['width']}"
    if (folder / "bench.json").is_file() and json.loads((folder / "bench.json").read_text()) == stamp:
        return folder
    text = (DATA / "wikitext-2" / "valid.txt").read_text(encoding="utf-8")[:size["pretrain_chars"]]
    corpus = base_dir / "wikitext-valid.txt"
    corpus.parent.mkdir(parents=True, exist_ok=True)
    corpus.write_text(text, encoding="utf-8")
    random_base = random_gpt2(base_dir / "random", text, size)
    print(f"pretraining the base on {len(text):,} characters of WikiText-2 ({size['pretrain_epochs']} epochs)...",
          flush=True)
    t0 = time.perf_counter()
    tinylm.finetune(random_base, corpus, out=folder, overwrite=True, progress=False, echo=lambda line: None,
                    config=FinetuneConfig(**{**COMMON, "epochs": size["pretrain_epochs"], "lr": 1e-3,
                                             "warmup_steps": 50}))
    (folder / "bench.json").write_text(json.dumps(stamp))
    print(f"  done in {time.perf_counter() - t0:.0f} s", flush=True)
    return folder


def random_gpt2(folder: Path, text: str, size: dict) -> Path:
    """A GPT-2-shaped model with random weights and a byte-level BPE tokenizer trained on `text`."""
    import tokenizers as hf
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    backend = hf.Tokenizer(hf.models.BPE())
    backend.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = hf.decoders.ByteLevel()
    trainer = hf.trainers.BpeTrainer(vocab_size=size["vocab"], special_tokens=["<|endoftext|>"],
                                     initial_alphabet=hf.pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator([text], trainer)
    eos = "<|endoftext|>"
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=eos, eos_token=eos, unk_token=eos)
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=size["width"], n_layer=size["layers"],
                        n_head=size["heads"], bos_token_id=tokenizer.eos_token_id,
                        eos_token_id=tokenizer.eos_token_id)
    tokenizer.save_pretrained(folder)
    GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def fine_tune_text(base_dir: Path, chars: int) -> Path:
    """The first `chars` characters of Tiny Shakespeare as a file (tinylm splits off the last 10% to validate)."""
    path = base_dir / f"shakespeare-{chars}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((DATA / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")[:chars], encoding="utf-8")
    return path


# -- one fine-tune per process ---------------------------------------------------------------------------------
def run_child(base: Path, text: Path, out: Path, config: dict) -> dict:
    """Run one fine-tune in a fresh process; its last stdout line is its measurements as JSON."""
    job = json.dumps({"base": str(base), "text": str(text), "out": str(out), "config": config})
    done = subprocess.run([sys.executable, __file__, "--child", job], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"the fine-tune {config} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def child(job: dict) -> None:
    """Fine-tune once and print what was measured (run in its own process: its peak RSS is its own)."""
    import peft  # noqa: F401  (imported in both configurations, so the RSS before training compares)
    import transformers  # noqa: F401

    import tinylm
    from tinylm.training.finetune import FinetuneConfig

    rss_before = rss_now()
    t0 = time.perf_counter()
    tinylm.finetune(job["base"], job["text"], out=job["out"], overwrite=True, progress=False,
                    echo=lambda line: None, config=FinetuneConfig(**job["config"]))
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    out = Path(job["out"])
    summary = json.loads((out / "summary.json").read_text())
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line]
    print(json.dumps({
        "trainable": summary["trainable_parameters"], "parameters": summary["parameters"],
        "tokens_per_s": statistics.mean(e["tokens_per_s"] for e in epochs), "train_seconds": summary["train_seconds"],
        "wall_seconds": wall, "rss_peak": peak, "rss_before": rss_before, "val_before": summary["val_loss_before"],
        "saved": {path.name: path.stat().st_size for path in (out / "model.safetensors",
                                                             out / "adapter" / "adapter_model.safetensors")
                  if path.is_file()},
        "curve": [(e["elapsed_seconds"], e["val_loss"]) for e in epochs]}))


def rss_now() -> int:
    """This process's resident memory now, in bytes (Linux: /proc/self/statm)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- the report --------------------------------------------------------------------------------------------
def table(results: dict[str, list[dict]], configs: dict, size: dict, args) -> str:
    """The Markdown table: one row per configuration, medians over the repeats."""
    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    # The same training time: the faster configuration's whole run; each is scored by its best epoch by then
    # (2% slack: the faster one's own last epoch counts whatever its timing noise).
    budget = min(median(name, "train_seconds") for name in results)

    def loss_by(name: str, seconds: float) -> str:
        losses = [min((v for t, v in r["curve"] if t <= seconds * 1.02), default=None) for r in results[name]]
        losses = [v for v in losses if v is not None]
        return f"{statistics.median(losses):.4f}" if losses else "(no epoch yet)"

    header = (f"\nBase: GPT-2-shaped {size['layers']}x{size['width']}, pretrained on WikiText-2 "
              f"({size['pretrain_chars']:,} characters, {size['pretrain_epochs']} epochs); fine-tuned on "
              f"{size['chars']:,} characters of Tiny Shakespeare, {size['epochs']} epochs of batch 16 x 128 tokens, "
              f"fp32, {args.threads} thread(s); {args.repeats} run(s) each, medians.\n")
    rows = ["| | lr | trainable parameters | tokens/s | training s | peak RSS MB (growth) | saved MB | "
            f"val loss before | val loss after {budget:.0f} s | best val loss |", "|" + "---|" * 10]
    for name in results:
        trainable, parameters = median(name, "trainable"), median(name, "parameters")
        peak, before = median(name, "rss_peak") / 2**20, median(name, "rss_before") / 2**20
        rss = f"{peak:,.0f} (+{peak - before:,.0f})"
        rows.append(f"| {name} | {configs[name]['lr']:g} | {trainable:,.0f} of {parameters:,.0f} "
                    f"({trainable / parameters:.2%}) | {median(name, 'tokens_per_s'):,.0f} | "
                    f"{median(name, 'train_seconds'):.1f} | {rss} | {saved(results[name][0])} | "
                    f"{median(name, 'val_before'):.4f} | "
                    f"{loss_by(name, budget)} | {loss_by(name, float('inf'))} |")
    return header + "\n".join(rows)


def saved(result: dict) -> str:
    """The sizes of the weights a run wrote: the model, and the adapter a LoRA run keeps beside it."""
    names = {"model.safetensors": "model", "adapter_model.safetensors": "adapter"}
    return " + ".join(f"{names[name]} {size / 2**20:.2f}" for name, size in result["saved"].items())


def cpu_model() -> str:
    """The CPU's name as /proc/cpuinfo gives it (platform's elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load() -> str:
    """The 1, 5 and 15 minute load averages: other jobs on a shared machine slow every figure here."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
