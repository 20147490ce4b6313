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
}
