"""Named recipes: partial settings applied before the user's own flags (`--preset NAME`).

Each preset may set "model" (with "name", the --model value), "data", "tokenizer" and "train" fields.
"""

from __future__ import annotations

from typing import Any

DEFAULT_PRESET = "default"
"""What `tinylm train` uses when neither --preset nor --model is given."""

# The LSTM recipe that the first run and cpu-best share (see "cpu-best" for how it was found): 1x384 with
# 128-wide embeddings (824,388 parameters on Tiny Shakespeare), windows of 64 characters with the state carried
# from batch to batch, AdamW 1.6e-2 with weight decay 0.2, 50 warm-up steps, then a linear decay to zero at the
# end of a wall-clock budget. cpu-best trains the LSTM's weight matrices with Muon instead (measured there).
_BUDGET_LSTM = {
    "model": {"name": "lstm", "layers": 1, "hidden": 384, "embed": 128, "dropout": 0.0},
    "data": {"block_size": 64},
}
_BUDGET_LSTM_TRAIN = {"batch_size": 32, "lr": 1.6e-2, "optimizer": "adamw", "betas": (0.9, 0.99),
                      "weight_decay": 0.2, "grad_clip": 1.0, "warmup_steps": 50, "lr_schedule": "linear",
                      "min_lr_ratio": 0.0, "stateful": True}

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    # The first run: what `tinylm train` does with no --preset and no --model. The budget LSTM in one process (no
    # launcher) for 190 s: 194 s from launch to exit; full-val over seeds 1-5 on a 2-core AMD EPYC (Zen 4,
    # bench/cpu_budget.py --recipes default --sides native avx2 --seeds 1-5): median 1.4056, worst 1.4083 in bf16
    # (native), median 1.4281, worst 1.4311 in fp32 as an AVX2-only CPU (bench/README.md; with windows of 128:
    # median 1.4187 / 1.4491; the old default, LSTM 2x256 at a constant 3e-3 for 5 epochs, took 408 s to 1.558
    # in fp32). No early stopping: the decay to zero makes the last epochs the best, and a plateau before them is
    # no end (on Goethe's Faust, ~20 epochs in the budget, patience 3 stopped seed 3 at epoch 14 with 1.5246,
    # where seeds that ran on ended at 1.47-1.49); a small text ends at 30 epochs, the decay fitted to them
    # (the LR follows whichever runs out first). --stateful and its windows of 64 are left
    # out with --lines or --target last, which read no single stream (the data's default window, 128, instead).
    "default": {**_BUDGET_LSTM, "train": {**_BUDGET_LSTM_TRAIN, "time_budget": 190.0, "epochs": 30, "patience": 0}},
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
    # The best < 1M-parameter recipe for a 2-core CPU at a fixed wall-clock budget (215 s from the command to
    # its exit, start-up and the final evaluation included), the same on every CPU class: the first run's budget
    # LSTM (1x384, embed 128, 824,388 parameters on Tiny Shakespeare; an LSTM runs 2.8x more tokens per second
    # than a GPT of the same size here) in one process with all its threads, windows of 64 with the state carried
    # from batch to batch (--stateful), Muon 0.04 for the LSTM's two weight matrices and AdamW 1.6e-2 (beta2
    # 0.99) for the embedding, head and biases, weight decay 0.05, 50 warm-up steps, then a linear decay to zero
    # at the end of the 203 s budget. Over seeds 1-5 on a 2-core AMD EPYC (Zen 4, bench/cpu_budget.py --recipes
    # cpu-best --sides native avx2 --seeds 1-5), full-val in 206-212 s: native bf16 median 1.4068, worst 1.4071;
    # as an AVX2-only CPU (fp32) median 1.4185, worst 1.4431 (a run at 12k tokens/s, the others 17-20k; run again,
    # 1.4075: median 1.4130, worst 1.4231; bench/README.md). With AdamW for every weight
    # (weight decay 0.2, the first run's optimiser) it was 1.4047 / 1.4117 and 1.4274 / 1.4401: at equal tokens
    # (4.3M, bench/equal_tokens.py --seeds 1-3) Muon 0.04 ends at a median of 1.4097 against AdamW's 1.4294; its
    # iterations cost tokens/s (0.72x with bf16, about 0.8x in fp32, where they run in their Gram form: training/
    # optim.py), which the fp32 side, with the fewer tokens, wins back most. At equal tokens, Muon 0.02 with
    # weight decay 0.05 / 0.1 / 0.2: 1.4177 / 1.4224 / 1.4528; Muon 0.06: 1.4112; weight decay 0.02: 1.4267;
    # AdamW alone with weight decay 0.05: 1.4521. Windows 128 -> 64 -> 32 (AdamW): 1.4431 -> 1.4294 -> 1.4285
    # (twice the optimizer steps for the same tokens; the carried state keeps each character's context); at 64,
    # lr 1.2e-2 with 200 warm-up steps 1.4303, lr 2.2e-2 1.4318, clipping at 0.25 1.4345; embed 192 / 256:
    # 1.4276 / 1.4277. Earlier, one seed at equal tokens (1,060 steps of 64 x 128): embed 64 -> 128: 1.472 ->
    # 1.452; stateful, lr 1.2e-2: dropout 0.1 1.460 against none 1.454. Two single-threaded DDP processes (this
    # preset once) ended higher.
    "cpu-best": {**_BUDGET_LSTM, "train": {**_BUDGET_LSTM_TRAIN, "optimizer": "muon", "muon_lr": 0.04,
                                           "weight_decay": 0.05, "processes": 1, "time_budget": 203.0,
                                           "epochs": None, "patience": 0}},
    # The fastest recipe to validation loss 1.47 on one GPU (Tiny Shakespeare, char-level), after what the
    # Performance issue's experimental trainer measured: nanoGPT's 6 x 384 shape (10.6M parameters) with the
    # modern options of models/gpt.py (rotary positions, weightless RMSNorm, QK-norm, ReLU^2, an untied head
    # and residual projections that start at zero), Muon (lr 0.03) for the hidden matrices and fused AdamW
    # (2e-3) for the rest, batch 128 x 256, warm-up 50 then cosine to 0.1x at the last step (16 epochs of 31
    # steps: 496), dropout 0.1 (0.2 ends lower but reaches 1.47 later), validation after every epoch, no early
    # stopping, at most 60 s. No per-epoch sample (it would cost more than the training on a GPU): run
    # `tinylm sample RUN` after. Targets, NOT MEASURED YET (built without a GPU): a checkpoint at val <= 1.47
    # within 10 s of process start on an H100, best val <= 1.42 within 60 s; bench/gpu_fast.py measures them.
    "gpu-fast": {
        "model": {"name": "gpt", "layers": 6, "heads": 6, "embed": 384, "dropout": 0.1, "positions": "rope",
                  "norm": "rmsnorm", "qk_norm": True, "activation": "relu2", "tie_head": False,
                  "zero_init_proj": True, "bias": False},
        "data": {"block_size": 256},
        "train": {"optimizer": "muon", "lr": 2e-3, "muon_lr": 0.03, "fused": True, "batch_size": 128,
                  "lr_schedule": "cosine", "warmup_steps": 50, "min_lr_ratio": 0.1, "epochs": 16, "patience": 0,
                  "time_budget": 60.0, "sample_tokens": 0},
    },
}


PRESETS["cpu-best-fp32"] = PRESETS["cpu-best"]
"""The name cpu-best had on CPUs without native bf16 while it ran two processes elsewhere: the same recipe now."""
