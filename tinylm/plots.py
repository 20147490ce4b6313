"""Plots a person would rather look at than read. matplotlib is imported lazily (Agg backend)."""

from __future__ import annotations

from pathlib import Path

from .io import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
                    textcoords="offset points", xytext=(0, -16), ha="center", fontsize=8, color="tab:orange")
    ax.set_xlabel("epoch")
    ax.set_ylabel("cross-entropy (nats / token)")
    ax.set_title(title or "loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
