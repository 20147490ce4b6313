"""Plots a person would rather look at than read. matplotlib is imported lazily (Agg backend)."""

from __future__ import annotations

from pathlib import Path

from .io import atomic_path


def _pyplot():
    import os

    import matplotlib

    # Agg: a script or a server never opens a window. A notebook keeps its inline backend (ipykernel and Colab
    # name it in MPLBACKEND), or its own plots would stop showing after a tinylm plot.
    if "inline" not in os.environ.get("MPLBACKEND", ""):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, plt, path: str | Path) -> None:
    """Write the figure as a PNG atomically and free it."""
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def plot_loss(metrics: list[dict], path: str | Path, title: str = "") -> None:
    """Training loss (per logging interval, and per epoch) and validation loss per epoch."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    curve = [point for record in metrics for point in record.get("train_curve", [])]
    steps_per_epoch = max((r.get("steps_per_epoch") or 0) for r in metrics) if metrics else 0
    if curve and steps_per_epoch:
        ax.plot([s / steps_per_epoch for s, _ in curve], [loss for _, loss in curve],
                color="tab:blue", alpha=0.35, lw=1, label="train (running)")
    epochs = [r["epoch"] for r in metrics]
    ax.plot(epochs, [r["train_loss"] for r in metrics], "o-", color="tab:blue", label="train (epoch mean)")
    ax.plot(epochs, [r["val_loss"] for r in metrics], "s-", color="tab:orange", label="validation")
    best = min(metrics, key=lambda r: r["val_loss"]) if metrics else None
    if best:
        ax.annotate(f"best {best['val_loss']:.3f}", (best["epoch"], best["val_loss"]),
                    textcoords="offset points", xytext=(-6, 8), ha="right", fontsize=8, color="tab:orange")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.set_title(title or "loss")
    ax.grid(alpha=0.3)
    ax.legend()
    _save(fig, plt, path)


def plot_losses(losses: list[float], path: str | Path, title: str = "", xlabel: str = "epoch",
                ylabel: str = "validation loss") -> None:
    """One loss per epoch (the validation loss of a submission README), each point labelled."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
    epochs = list(range(1, len(losses) + 1))
    ax.plot(epochs, losses, "s-", color="tab:orange")
    for epoch, loss in zip(epochs, losses):
        ax.annotate(f"{loss:.3f}", (epoch, loss), textcoords="offset points", xytext=(0, 6), ha="center",
                    fontsize=8)
    ax.set_xticks(epochs)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _save(fig, plt, path)


def plot_distributions(labels: list[str], distributions: dict[float, list[float]],
                       entropies: dict[float, float], path: str | Path, title: str = "") -> None:
    """Probabilities of the same tokens (x, most likely first) under several temperatures (one line each)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    # cold (sharp) to hot (flat); plasma stops at 0.85 because its last colours are too pale on white
    colors = plt.cm.plasma([0.85 * i / max(1, len(distributions) - 1) for i in range(len(distributions))])
    x = list(range(len(labels)))
    for color, (temperature, probs) in zip(colors, sorted(distributions.items())):
        ax.plot(x, probs, "o-", color=color, lw=1.6, ms=4,
                label=f"T = {temperature:g}  (entropy {entropies[temperature]:.2f} bits)")
    ax.set_xticks(x)
    ax.set_xticklabels(labels, fontsize=9, rotation=0 if max(map(len, labels), default=0) <= 3 else 45)
    ax.set_xlabel("next token (most likely first at T = 1)")
    ax.set_ylabel("probability")
    ax.set_ylim(0, None)
    ax.set_title(title or "tempered softmax")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, plt, path)


def plot_temperature(temperatures: list[float], series: dict[str, list[float | None]], path: str | Path, *,
                     reference: float | None, threshold: float, crossing: float | None,
                     title: str = "") -> None:
    """Text statistics against sampling temperature; the first series (word validity) is drawn boldest,
    with the validation text's value and the threshold below which words count as no longer recognisable."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=110)
    styles = [{"color": "tab:blue", "lw": 2.6, "marker": "o"},
              {"color": "tab:green", "lw": 1.2, "marker": "s", "alpha": 0.8},
              {"color": "tab:red", "lw": 1.2, "marker": "^", "alpha": 0.8}]
    for style, (name, values) in zip(styles, series.items()):
        points = [(t, v) for t, v in zip(temperatures, values) if v is not None]
        ax.plot([t for t, _ in points], [v for _, v in points], label=name, **style)
    if reference is not None:
        ax.axhline(reference, color="tab:blue", ls="--", lw=1, alpha=0.6,
                   label=f"real words in validation text ({reference:.0%})")
    ax.axhline(threshold, color="gray", ls=":", lw=1, label=f"threshold ({threshold:.0%} real words)")
    if crossing is not None:
        ax.axvline(crossing, color="black", ls="-.", lw=1)
        ax.annotate(f"words no longer\nrecognisable from\nT ≈ {crossing:.2f}", (crossing, 0.04),
                    textcoords="offset points", xytext=(6, 0), fontsize=8)
    ax.set_xlabel("sampling temperature")
    ax.set_ylabel("share")
    ax.set_ylim(0, 1.02)
    ax.set_title(title or "text statistics against temperature")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)  # below, off the lines
    _save(fig, plt, path)


def plot_compare(names: list[str], bits_per_char: list[float], curves: dict[str, list[tuple[float, float]]],
                 path: str | Path, *, counted: set[str] = frozenset(), title: str = "",
                 ranges: list[tuple[float, float]] | None = None) -> None:
    """Left: validation bits per character per model (with `ranges`, medians over seeds with a bar from the
    best to the worst seed). Right: validation bits per character against training time, one point per
    evaluation (the median seed's run); the `counted` models (fitted in one pass) are also drawn as a level."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110,
                                      gridspec_kw={"width_ratios": [1, 1.4]})
    colors = [plt.cm.tab10(i % 10) for i in range(len(names))]
    bars = left.bar(names, bits_per_char, color=colors)
    if ranges:
        below = [value - low for value, (low, _) in zip(bits_per_char, ranges)]
        above = [high - value for value, (_, high) in zip(bits_per_char, ranges)]
        left.errorbar(names, bits_per_char, yerr=[below, above], fmt="none", ecolor="black", capsize=4, lw=1)
    for bar, value in zip(bars, bits_per_char):
        left.annotate(f"{value:.3f}", (bar.get_x() + bar.get_width() / 2, value), textcoords="offset points",
                      xytext=(0, 3), ha="center", fontsize=9)
    left.set_ylabel("validation bits per character (lower is better)")
    left.set_ylim(0, max([high for _, high in ranges or []] + bits_per_char, default=1) * 1.15)
    left.grid(alpha=0.3, axis="y")
    for color, name in zip(colors, names):
        points = curves.get(name, [])
        right.plot([s for s, _ in points], [b for _, b in points], "o-", color=color, label=name)
        if name in counted and points:  # a single point near 0 s: its level drawn across for comparison
            right.axhline(points[-1][1], color=color, ls="--", lw=1, alpha=0.7)
    right.set_xlabel("training time (s)")
    right.set_ylabel("validation bits per character")
    right.grid(alpha=0.3)
    right.legend(fontsize=8)
    fig.suptitle(title or "model comparison")
    _save(fig, plt, path)
