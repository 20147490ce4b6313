"""Regenerate the figures of docs/tutorial.md: the tutorial's commands, run with the settings it states,
plus a few figures drawn here from a trained model with the Python API (embeddings, hidden state,
logits, surprisal), where tinylm has no plot command.

    python examples/tutorial_figures.py                       # about 10 minutes on a laptop CPU
    python examples/tutorial_figures.py --runs /tmp/tutorial --figures docs/img

Runs go to --runs (default runs/tutorial); the PNGs to --figures (default docs/img). A step whose output
already exists is not redone, so deleting one run or report redoes only that step.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import subprocess
from pathlib import Path

import matplotlib
import torch
import torch.nn.functional as F

import tinylm
from tinylm.data import load_split
from tinylm.tokenizers import TokenizerConfig, build_tokenizer

matplotlib.use("Agg")  # files only, no window
import matplotlib.pyplot as plt

PROMPT = "ROMEO:\nI will not "  # where many next characters are plausible


def tinylm_cli(*args: str) -> None:
    print("$ tinylm " + " ".join(args), flush=True)
    subprocess.run(["tinylm", *args], check=True)


def label(token: str) -> str:
    return {" ": "␣", "\n": "⏎", "\t": "⇥"}.get(token, token)


def save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


# -- 1. tokenization ---------------------------------------------------------------------------------
def tokenization_figure(text: str, path: Path) -> None:
    """Vocabulary size against the number of tokens the text becomes, for char, word and BPE."""
    rows = []
    for kind, vocab in (("char", None), ("word", None), ("bpe", 512), ("bpe", 2048), ("bpe", 8192)):
        tokenizer = build_tokenizer(TokenizerConfig(kind=kind, vocab_size=vocab), text)
        name = kind if vocab is None else f"{kind} {vocab}"
        rows.append((name, tokenizer.vocab_size, len(tokenizer.encode(text))))
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=100)
    names = [r[0] for r in rows]
    for ax, values, title in ((left, [r[1] for r in rows], "vocabulary size (tokens)"),
                              (right, [len(text) / r[2] for r in rows], "characters per token")):
        bars = ax.bar(names, values, color=["tab:blue", "tab:green"] + ["tab:orange"] * 3)
        for bar, value in zip(bars, values):
            ax.annotate(f"{value:,.0f}" if value >= 10 else f"{value:.2f}",
                        (bar.get_x() + bar.get_width() / 2, value), textcoords="offset points", xytext=(0, 2),
                        ha="center", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(alpha=0.3, axis="y")
    left.set_yscale("log")
    fig.suptitle("Tiny Shakespeare (training split) under five tokenizers", fontsize=11)
    save(fig, path)


# -- 2. embeddings -------------------------------------------------------------------------------------
def embeddings_figure(run: tinylm.LoadedModel, path: Path) -> None:
    """The character embeddings of a trained LSTM, projected on their two main directions (PCA)."""
    weights = run.module.embedding.weight.detach().float()  # (V, E): one learned vector per character
    tokens = [run.tokenizer.token_text(i) for i in range(weights.size(0))]
    keep = [i for i, t in enumerate(tokens) if not t.startswith("<")]  # special tokens never appear in text
    centered = weights[keep] - weights[keep].mean(0)
    _, _, v = torch.linalg.svd(centered, full_matrices=False)
    xy = centered @ v[:2].T  # (V, 2)
    fig, ax = plt.subplots(figsize=(7, 5.5), dpi=100)
    for (x, y), i in zip(xy.tolist(), keep):
        t = tokens[i]
        color = ("tab:red" if t.lower() in "aeiou" else "tab:blue" if t.islower() else
                 "tab:purple" if t.isupper() else "black")
        ax.text(x, y, label(t), color=color, fontsize=11, ha="center", va="center", family="monospace")
    ax.set_xlim(xy[:, 0].min() - 0.3, xy[:, 0].max() + 0.3)
    ax.set_ylim(xy[:, 1].min() - 0.3, xy[:, 1].max() + 0.3)
    ax.set_xlabel("first principal direction")
    ax.set_ylabel("second principal direction")
    ax.set_title("character embeddings of the tutorial LSTM (PCA to 2-D)\n"
                 "red: vowels, blue: lower-case consonants, purple: capitals, black: the rest", fontsize=10)
    ax.grid(alpha=0.3)
    save(fig, path)


# -- 3. the recurrent hidden state --------------------------------------------------------------------
def hidden_state_figure(run: tinylm.LoadedModel, text: str, path: Path) -> None:
    """The LSTM's hidden state h_t after each character of `text`: the units that change the most."""
    ids = torch.tensor([run.tokenizer.encode(text)])
    with torch.no_grad():
        h, _ = run.module.rnn(run.module.embedding(ids))  # (1, T, H): the last layer's h_t, each in (-1, 1)
    h = h[0].float()
    units = h.var(0).argsort(descending=True)[:12]  # the 12 most active units
    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=100)
    image = ax.imshow(h[:, units].T, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(text)))
    ax.set_xticklabels([label(c) for c in text], fontsize=8, family="monospace")
    ax.set_yticks(range(len(units)))
    ax.set_yticklabels([f"unit {int(u)}" for u in units], fontsize=7)
    ax.set_xlabel("input character (h_t is the state after reading it)")
    ax.set_title("the LSTM's hidden state, character by character (12 most active of 256 units)", fontsize=10)
    fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01)
    save(fig, path)


# -- 4. logits -------------------------------------------------------------------------------------------
def logits_figure(run: tinylm.LoadedModel, prompt: str, path: Path) -> None:
    """The raw scores (logits) of the next character after `prompt`, and the probabilities softmax makes."""
    ids = torch.tensor([run.prompt_ids(prompt)])
    with torch.no_grad():
        logits, _ = run.module(ids)  # (1, T, V): scores for the token after each position
    last = logits[0, -1].float()  # (V,)
    top = last.argsort(descending=True)[:15]
    labels = [label(run.tokenizer.token_text(int(i))) for i in top]
    probs = F.softmax(last, dim=-1)[top]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.4), dpi=100)
    left.bar(labels, last[top].tolist(), color="tab:gray")
    left.set_title(f"logits after {prompt!r} (15 highest of {last.numel()})", fontsize=10)
    left.axhline(0, color="black", lw=0.8)
    right.bar(labels, probs.tolist(), color="tab:blue")
    right.set_title("softmax(logits): probabilities, summing to 1 over all tokens", fontsize=10)
    for ax in (left, right):
        ax.grid(alpha=0.3, axis="y")
        ax.tick_params(axis="x", labelsize=10)
    save(fig, path)


# -- 6. generative models score text ------------------------------------------------------------------
def surprisal(run: tinylm.LoadedModel, text: str) -> list[float]:
    """-log2 p(character | the characters before it), for every character after the first."""
    ids = torch.tensor([run.tokenizer.encode(text)])
    with torch.no_grad():
        logits, _ = run.module(ids[:, :-1])
    nats = F.cross_entropy(logits[0].float(), ids[0, 1:], reduction="none")  # (T - 1,)
    return (nats / math.log(2)).tolist()


def surprisal_figure(run: tinylm.LoadedModel, real: str, shuffled: str, path: Path) -> None:
    fig, axes = plt.subplots(2, 1, figsize=(10, 4.2), dpi=100, sharey=True)
    rows = ((axes[0], real, "a line of the validation text", "tab:blue"),
            (axes[1], shuffled, "its characters shuffled", "tab:red"))
    for ax, text, name, color in rows:
        bits = surprisal(run, text)
        ax.bar(range(len(bits)), bits, color=color)
        ax.set_xticks(range(len(bits)))
        ax.set_xticklabels([label(c) for c in text[1:]], fontsize=8, family="monospace")
        ax.set_title(f"{name}: {sum(bits) / len(bits):.2f} bits per character", fontsize=10)
        ax.set_ylabel("bits")
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle("surprisal -log2 p(character | text before it) under the tutorial LSTM", fontsize=11)
    save(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("runs/tutorial"))
    parser.add_argument("--figures", type=Path, default=Path("docs/img"))
    args = parser.parse_args()
    runs, figures = args.runs, args.figures
    runs.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)

    lstm = runs / "lstm"
    if not (lstm / "summary.json").is_file():
        tinylm_cli("train", "--data", "shakespeare", "--model", "lstm", "--layers", "1", "--hidden", "256",
                   "--embed", "32", "--block-size", "100", "--epochs", "5", "--out", str(lstm), "--overwrite")
    shutil.copyfile(lstm / "loss.png", figures / "loss.png")
    run = tinylm.load(lstm)
    train_text, val_text = load_split(run.config.data)

    tokenization_figure(train_text, figures / "tokenization.png")
    for kind, order, extra in (("char", "6", []), ("word", "3", []), ("bpe", "3", ["--vocab-size", "2048"])):
        if not (runs / f"markov-{kind}" / "summary.json").is_file():
            tinylm_cli("train", "--model", "markov", "--order", order, "--tokenizer", kind, *extra,
                       "--out", str(runs / f"markov-{kind}"), "--overwrite")
    embeddings_figure(run, figures / "embeddings.png")
    hidden_state_figure(run, "ROMEO:\nI will not go, my lord.\n", figures / "hidden_state.png")
    logits_figure(run, PROMPT, figures / "logits.png")

    tinylm_cli("plot", "softmax", str(lstm), "--prompt", PROMPT, "--out", str(figures / "softmax.png"))
    if not (runs / "temperature" / "temperature.json").is_file():
        tinylm_cli("temperature", str(lstm), "--prompts", "ROMEO:", "--out", str(runs / "temperature"))
    shutil.copyfile(runs / "temperature" / "temperature.png", figures / "temperature.png")

    # A line of the validation text (never trained on), and the same characters in a random order.
    line = next(line for line in val_text.splitlines() if 45 <= len(line) <= 60)
    shuffled = "".join(random.Random(0).sample(line, len(line)))
    surprisal_figure(run, line, shuffled, figures / "surprisal.png")
    (runs / "real.txt").write_text(val_text, encoding="utf-8")
    shuffled_text = "".join(random.Random(0).sample(val_text, len(val_text)))
    (runs / "shuffled.txt").write_text(shuffled_text, encoding="utf-8")
    tinylm_cli("eval", str(lstm), "--text", str(runs / "real.txt"))
    tinylm_cli("eval", str(lstm), "--text", str(runs / "shuffled.txt"))

    if not (runs / "compare" / "compare.json").is_file():
        tinylm_cli("compare", "--data", "shakespeare", "--models", "markov,lstm,gpt",
                   "--budget-seconds", "60", "--out", str(runs / "compare"), "--overwrite", "--quiet")
    shutil.copyfile(runs / "compare" / "compare.png", figures / "compare.png")
    print((runs / "compare" / "compare.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
