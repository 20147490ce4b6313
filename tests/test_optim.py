"""Optimizers (tinylm/training/optim.py): the same updates as torch.optim's Adam, AdamW and Muon, the split of
parameters between Muon and AdamW, state save and restore, start-up without torch._dynamo, and training and
exact resume with --optimizer muon. Also the other piece of the GPU recipe: training windows moved to the
device give the same batches."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO
from test_training import QUIET, losses, weights_equal

import tinylm
from tinylm.data import TokenWindows
from tinylm.errors import TinyLMError
from tinylm.models import build_model, model_config
from tinylm.training.checkpoint import _optimizer_from_files, _optimizer_to_files
from tinylm.training.optim import Optimizer, build_optimizer, hidden_matrices, orthogonalize

VOCAB = 13
MODERN = {"positions": "rope", "norm": "rmsnorm", "qk_norm": True, "activation": "relu2", "tie_head": False,
          "zero_init_proj": True, "bias": False}


def make(seed: int = 0, **options) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(model_config("gpt", vocab_size=VOCAB, block_size=16, layers=2, heads=2, embed=16,
                                    dropout=0.0, **options))


def train_steps(model: torch.nn.Module, optimizer, steps: int, seed: int = 1, ids=None) -> list[float]:
    """Training losses of `steps` steps on random batches (or on the batch `ids` every step)."""
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        batch = torch.randint(0, VOCAB, (4, 17), generator=generator) if ids is None else ids
        logits, _ = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), batch[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        out.append(loss.item())
    return out


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("kind", ["adam", "adamw"])
def test_adam_and_adamw_are_bit_identical_to_torch_optim(kind, fused):
    cfg = tinylm.TrainConfig(optimizer=kind, lr=1e-2, weight_decay=0.1, betas=(0.8, 0.95), fused=fused)
    ours = make()
    train_steps(ours, build_optimizer(ours, cfg), 6)
    theirs = make()
    cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    train_steps(theirs, cls(theirs.parameters(), lr=1e-2, betas=(0.8, 0.95), weight_decay=0.1, fused=fused or None), 6)
    assert same_weights(ours, theirs)


def test_muon_is_bit_identical_to_torch_optim_muon_with_adamw_for_the_rest(monkeypatch):
    monkeypatch.setenv("TINYLM_CPU_BF16", "1")  # Newton-Schulz in bf16, as torch.optim.Muon's, on every CPU
    cfg = tinylm.TrainConfig(optimizer="muon", lr=1e-2, muon_lr=0.03, weight_decay=0.01)
    ours = make(**MODERN)
    optimizer = build_optimizer(ours, cfg)
    assert [(g["kind"], len(g["params"]), g["lr_scale"]) for g in optimizer.param_groups] == [
        ("adamw", 2, 1.0), ("muon", 8, 3.0)]  # AdamW first: param_groups[0]["lr"] is the --lr schedule
    train_steps(ours, optimizer, 6)

    theirs = make(**MODERN)
    hidden = hidden_matrices(theirs)
    rest = [p for p in theirs.parameters() if all(p is not h for h in hidden)]
    muon = torch.optim.Muon(hidden, lr=0.03, weight_decay=0.01)
    adamw = torch.optim.AdamW(rest, lr=1e-2, betas=(0.9, 0.99), weight_decay=0.01)

    class Both:
        def zero_grad(self, set_to_none=True):
            muon.zero_grad(set_to_none)
            adamw.zero_grad(set_to_none)

        def step(self):
            adamw.step()
            muon.step()

    train_steps(theirs, Both(), 6)
    assert same_weights(ours, theirs)


@pytest.mark.parametrize("native", ["0", "1"])
def test_newton_schulz_runs_in_bf16_only_where_the_cpu_has_it(monkeypatch, native):
    """Without native bf16, emulated bf16 products made Muon's iterations most of a GPT's step: fp32 there."""
    monkeypatch.setenv("TINYLM_CPU_BF16", native)
    model = make(**MODERN)
    optimizer = build_optimizer(model, tinylm.TrainConfig(optimizer="muon", lr=1e-2, muon_lr=0.03))
    assert optimizer.ns_dtype == (torch.bfloat16 if native == "1" else torch.float32)
    pattern = (torch.arange(17)[None, :] + 3 * torch.arange(4)[:, None]) % VOCAB  # a pattern to learn
    curve = train_steps(model, optimizer, 10, ids=pattern)
    assert curve[-1] < 0.7 * curve[0] and all(math.isfinite(p.sum().item()) for p in model.parameters())


def test_orthogonalize_in_fp32_pushes_singular_values_as_in_bf16():
    g = torch.randn(24, 8, generator=torch.Generator().manual_seed(0)) * torch.linspace(0.1, 5, 8)  # skewed
    exact, rounded = orthogonalize(g, 5, torch.float32), orthogonalize(g, 5, torch.bfloat16)
    assert exact.dtype == torch.float32 and rounded.dtype == torch.bfloat16
    assert torch.linalg.svdvals(g).max() / torch.linalg.svdvals(g).min() > 50
    singular = torch.linalg.svdvals(exact)
    assert singular.min() > 0.6 and singular.max() < 1.2
    torch.testing.assert_close(exact, rounded.float(), atol=0.05, rtol=0.05)
    assert not torch.equal(exact, rounded.float())  # the fp32 iterations are not bf16's rounded


@pytest.mark.parametrize("shape", [(96, 24), (24, 96), (40, 24)])
def test_orthogonalize_in_fp32_takes_the_gram_form_with_the_direct_iterations_result(shape):
    """fp32 iterates a matrix at least twice as long as wide on its small Gram matrix (the LSTM's 4h x h
    recurrent weights): the same quintic steps, so the same result as the direct iterations in float64."""
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(1)) * torch.linspace(0.1, 5, shape[1])
    direct = orthogonalize(g.double(), 5, torch.float64)
    torch.testing.assert_close(orthogonalize(g, 5, torch.float32), direct.float(), atol=2e-5, rtol=1e-4)
    assert orthogonalize(g, 0, torch.float32).shape == g.shape  # no step: the normalised matrix itself
    singular = torch.linalg.svdvals(orthogonalize(g, 5, torch.float32))
    assert singular.min() > 0.3 and singular.max() < 1.25  # the quintic steps stop near [0.7, 1.2]


@pytest.mark.parametrize("native", ["0", "1"])
def test_muon_trains_an_lstm_on_both_cpu_classes(monkeypatch, native):
    """cpu-best's optimiser: Muon for the LSTM's 4h x h weights, which fp32 (no native bf16) orthogonalises in the
    Gram form and native bf16 in the direct form."""
    monkeypatch.setenv("TINYLM_CPU_BF16", native)
    torch.manual_seed(0)
    lstm = build_model(model_config("lstm", vocab_size=VOCAB, embed=8, hidden=16, layers=1, dropout=0.0))
    optimizer = build_optimizer(lstm, tinylm.TrainConfig(optimizer="muon", lr=1e-2, muon_lr=0.04, weight_decay=0.05))
    assert optimizer.ns_dtype == (torch.bfloat16 if native == "1" else torch.float32)
    assert lstm.rnn.weight_hh_l0.shape == (64, 16)
    pattern = (torch.arange(17)[None, :] + 3 * torch.arange(4)[:, None]) % VOCAB
    curve = train_steps(lstm, optimizer, 20, ids=pattern)
    assert curve[-1] < 0.7 * curve[0] and all(math.isfinite(p.sum().item()) for p in lstm.parameters())


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest():
    tied = make()
    names = {id(p): n for n, p in tied.named_parameters()}
    assert sorted(names[id(p)] for p in hidden_matrices(tied)) == sorted(
        f"transformer.h.{i}.{m}.weight" for i in range(2) for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc",
                                                                   "mlp.c_proj"))
    untied = make(tie_head=False)
    assert all(p is not untied.lm_head.weight for p in hidden_matrices(untied))
    lstm = build_model(model_config("lstm", vocab_size=VOCAB, embed=8, hidden=16, layers=1, head="mlp"))
    lstm_names = {id(p): n for n, p in lstm.named_parameters()}
    assert sorted(lstm_names[id(p)] for p in hidden_matrices(lstm)) == ["rnn.weight_hh_l0", "rnn.weight_ih_l0"]


@pytest.mark.parametrize("kind", ["adamw", "muon"])
def test_state_dict_round_trip_continues_exactly(kind):
    cfg = tinylm.TrainConfig(optimizer=kind, lr=1e-2)
    straight = make(**MODERN)
    optimizer = build_optimizer(straight, cfg)
    train_steps(straight, optimizer, 3)
    saved_weights = {k: v.clone() for k, v in straight.state_dict().items()}
    tensors, meta = _optimizer_to_files(optimizer)  # what a checkpoint holds: safetensors + optimizer.json
    tensors, meta = {k: v.clone() for k, v in tensors.items()}, json.loads(json.dumps(meta))
    train_steps(straight, optimizer, 3, seed=2)

    resumed = make(seed=9, **MODERN)
    resumed.load_state_dict(saved_weights)
    again = build_optimizer(resumed, cfg)
    again.load_state_dict(_optimizer_from_files(tensors, meta))
    train_steps(resumed, again, 3, seed=2)
    assert same_weights(straight, resumed)
    with pytest.raises(ValueError, match="does not match"):
        build_optimizer(make(), tinylm.TrainConfig(optimizer="muon")).load_state_dict(
            build_optimizer(make(), tinylm.TrainConfig(optimizer="adamw")).state_dict())


def test_a_torch_optim_adamw_state_dict_loads():
    """Checkpoints written before tinylm had its own optimizer hold torch.optim.AdamW's state."""
    theirs = make()
    adamw = torch.optim.AdamW(theirs.parameters(), lr=1e-2, betas=(0.9, 0.99), weight_decay=0.0)
    train_steps(theirs, adamw, 3)
    ours = make(seed=5)
    ours.load_state_dict(theirs.state_dict())
    optimizer = build_optimizer(ours, tinylm.TrainConfig(optimizer="adamw", lr=1e-2))
    optimizer.load_state_dict(adamw.state_dict())
    train_steps(theirs, adamw, 3, seed=2)
    train_steps(ours, optimizer, 3, seed=2)
    assert same_weights(ours, theirs)


def test_building_and_stepping_never_imports_torch_dynamo():
    """torch.optim's classes import torch._dynamo (seconds) when built; tinylm's optimizer must not."""
    code = (
        "import sys, torch\n"
        "from tinylm.models import build_model, model_config\n"
        "from tinylm.config import TrainConfig\n"
        "from tinylm.training.optim import build_optimizer\n"
        "m = build_model(model_config('gpt', vocab_size=9, block_size=8, layers=1, heads=2, embed=8))\n"
        "for kind in ('adamw', 'muon'):\n"
        "    o = build_optimizer(m, TrainConfig(optimizer=kind, fused=True))\n"
        "    m(torch.randint(0, 9, (2, 8)))[0].sum().backward()\n"
        "    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)\n"
        "    o.step(); o.zero_grad(); o.load_state_dict(o.state_dict())\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert result.stdout.strip() == "False"


def test_optimizer_settings_are_validated():
    with pytest.raises(TinyLMError, match="adam, adamw or muon"):
        tinylm.TrainConfig(optimizer="sgd")
    with pytest.raises(TinyLMError, match="--muon-lr"):
        tinylm.TrainConfig(optimizer="muon", muon_lr=0.0)


def muon_config(source, **train) -> tinylm.RunConfig:
    return tinylm.RunConfig(
        data=tinylm.DataConfig(source=str(source), block_size=32),
        model=model_config("gpt", layers=1, heads=2, embed=32, dropout=0.1, **MODERN),
        train=tinylm.TrainConfig(**{"optimizer": "muon", "lr": 3e-3, "muon_lr": 0.03, "batch_size": 16,
                                    "warmup_steps": 5, "sample_tokens": 10, "seed": 3, **train}),
    )


def test_muon_training_lowers_the_loss_and_schedules_each_group_at_its_scale(small_corpus, tmp_path):
    # 30 steps: the first epoch cut short by the step budget, then evaluated
    run = tinylm.train(muon_config(small_corpus, max_steps=30, epochs=2, lr_schedule="cosine", min_lr_ratio=0.5),
                       out=tmp_path / "run", **QUIET)
    (record,) = run.metrics
    curve = [loss for _, loss in record["train_curve"]]
    assert record["step"] == 30 and curve[-1] < curve[0] - 0.3
    assert record["val_loss"] < math.log(run.tokenizer.vocab_size) - 0.7  # where the zero-init head starts
    groups = json.loads((tmp_path / "run/checkpoint/optimizer.json").read_text())["param_groups"]
    assert [g["kind"] for g in groups] == ["adamw", "muon"]
    assert groups[0]["lr"] == record["lr"] and groups[1]["lr"] == pytest.approx(10 * record["lr"])


def test_resume_with_muon_is_exact(tmp_path, shakespeare_text):
    """Stopped after epoch 1 and resumed to 2 epochs == 2 epochs straight (constant LR after warm-up, dropout)."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(shakespeare_text[:12_000], encoding="utf-8")  # 21 steps an epoch

    def config(epochs):
        return muon_config(corpus, epochs=epochs)

    tinylm.train(config(2), out=tmp_path / "straight", **QUIET)
    tinylm.train(config(1), out=tmp_path / "resumed", **QUIET)
    tinylm.resume(tmp_path / "resumed", epochs=2, **QUIET)
    assert losses(tmp_path / "straight") == losses(tmp_path / "resumed")
    assert weights_equal(tmp_path / "straight/checkpoint/model.safetensors",
                         tmp_path / "resumed/checkpoint/model.safetensors")
    assert isinstance(build_optimizer(make(), tinylm.TrainConfig()), Optimizer)


def test_windows_moved_to_a_device_give_the_same_batches():
    windows = TokenWindows(torch.arange(1000) % 37, block_size=16, stride=8)
    moved = windows.to("cpu")  # on a GPU run: .to(cuda); the batch order is drawn on the CPU either way
    assert moved is not windows and len(moved) == len(windows) and moved.num_tokens == windows.num_tokens
    for (x, y), (mx, my) in zip(windows.epoch(32, seed=4, skip=1), moved.epoch(32, seed=4, skip=1), strict=True):
        assert torch.equal(x, mx) and torch.equal(y, my) and mx.device.type == "cpu"
