"""Named recipes: partial settings applied before the user's own flags (`--preset NAME`).

Each preset may set "model" (with "name", the --model value), "data", "tokenizer" and "train" fields.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # The classic char-RNN exercise: maxlen-40 / step-3 windows, many-to-one LSTM, early stopping.
    "exercise": {
        "model": {"name": "lstm", "embed": 64, "hidden": 128, "layers": 1, "dropout": 0.2, "head": "mlp"},
        "data": {"target": "last", "block_size": 40, "stride": 3},
        "train": {"lr": 5e-3, "patience": 5, "optimizer": "adam", "batch_size": 128},
    },
    # A GPT that trains on a laptop CPU: 4 layers x 128 wide, 4 heads, block 128 (818,432 parameters with
    # Tiny Shakespeare's characters).
    "gpt-cpu": {
        "model": {"name": "gpt", "layers": 4, "heads": 4, "embed": 128, "dropout": 0.1},
        "data": {"block_size": 128},
        "train": {"lr": 2e-3, "batch_size": 32, "lr_schedule": "cosine", "warmup_steps": 100, "epochs": 10},
    },
    # nanoGPT's shakespeare-char model (6 layers x 384, 6 heads, block 256, dropout 0.2: 10.8M parameters)
    # and its optimisation (lr 1e-3 cosine to 1e-4, warm-up 100, beta2 0.99, batch 64); for a GPU.
    "gpt-gpu": {
        "model": {"name": "gpt", "layers": 6, "heads": 6, "embed": 384, "dropout": 0.2},
        "data": {"block_size": 256},
        "train": {"lr": 1e-3, "batch_size": 64, "lr_schedule": "cosine", "warmup_steps": 100, "epochs": 50,
                  "betas": (0.9, 0.99), "min_lr_ratio": 0.1},
    },
}
