"""The GPT family (tinylm/models/gpt.py): KV cache, the sliding context, the modern options (rotary
positions, RMSNorm, QK-norm, ReLU^2, untied zero-init head), presets, end-to-end training.
The shared model contract (shapes, carried state, config round trip) is in test_models.py."""

from __future__ import annotations

import argparse
import math
import time

import pytest
import torch
import torch.nn.functional as F

import tinylm
from tinylm.cli import build_parser
from tinylm.cli.train import config_from_args
from tinylm.errors import TinyLMError
from tinylm.generation.sampling import SamplingConfig, choose_next, generate_ids
from tinylm.models import build_model, model_config
from tinylm.models.gpt import GPT, rotary_tables, rotate

VOCAB = 11
MODERN = {"positions": "rope", "norm": "rmsnorm", "qk_norm": True, "activation": "relu2", "tie_head": False,
          "zero_init_proj": True, "bias": False}
ARCHITECTURES = {"classic": {}, "modern": MODERN}


def make_gpt(block_size: int, seed: int = 0, **options) -> GPT:
    """A small random GPT with large weights, so its greedy choices are far from ties."""
    torch.manual_seed(seed)
    model = build_model(model_config("gpt", vocab_size=VOCAB, block_size=block_size, layers=2, heads=2,
                                     embed=16, dropout=0.0, **options)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)
    return model


def window_start(i: int, block: int) -> int:
    """Where the context of the token at index i starts under the documented rule: the first `block`
    tokens see everything before them; then each time the block is full the context restarts from its
    last block // 2 tokens (one restart every block - block // 2 tokens)."""
    half = block // 2
    if i < block:
        return 0
    restarts = (i - block) // (block - half) + 1
    return block + (restarts - 1) * (block - half) - half


@torch.no_grad()
def reference_logits(model: GPT, seq: torch.Tensor, i: int) -> torch.Tensor:
    """The logits after token i, by a full pass over its context window (no cache carried)."""
    window = seq[:, window_start(i, model.config.block_size) : i + 1]
    assert window.size(1) <= model.config.block_size
    return model(window)[0][:, -1]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@pytest.mark.parametrize("block", [1, 7, 8])
def test_kv_cache_generation_equals_no_cache_past_the_block(block, architecture):
    model = make_gpt(block, **ARCHITECTURES[architecture])
    prompt, n = [3, 1, 4], 4 * block + 5
    for config in (SamplingConfig(max_new_tokens=n, greedy=True),
                   SamplingConfig(max_new_tokens=n, temperature=2.0, seed=0)):
        cached = list(generate_ids(model, prompt, config))
        # no cache: every token is chosen from a full pass over its window, with the same random draws
        generator = torch.Generator().manual_seed(0)
        seq = list(prompt)
        for _ in range(n):
            logits = reference_logits(model, torch.tensor([seq]), len(seq) - 1)
            seq.append(int(choose_next(logits, config, generator)))
        assert cached == seq[len(prompt):]
    assert len(set(cached)) > 1  # the sampled run: equality is not won by a constant output


@pytest.mark.parametrize("architecture", ARCHITECTURES)
@torch.no_grad()
def test_cached_logits_equal_full_windows_at_every_step_and_cache_stays_in_the_block(architecture):
    block = 8
    model = make_gpt(block, seed=1, **ARCHITECTURES[architecture])
    seq = torch.randint(0, VOCAB, (2, 3 * block + 3))
    logits, state = model(seq[:, :3])
    for i in range(3, seq.size(1)):
        torch.testing.assert_close(logits[:, -1], reference_logits(model, seq, i - 1), rtol=1e-5, atol=1e-5)
        logits, state = model(seq[:, i : i + 1], state)
        assert state.length <= block and all(k.size(2) <= block for k in state.keys)
    # a long input without a state follows the same rule, so it equals the token-by-token logits
    full, _ = model(seq)
    for i in (0, block - 1, block, 2 * block + 1, seq.size(1) - 1):
        torch.testing.assert_close(full[:, i], reference_logits(model, seq, i), rtol=1e-5, atol=1e-5)


def test_sliding_never_errors_with_long_prompts_and_sampling():
    model = make_gpt(6)
    prompt = torch.randint(0, VOCAB, (50,)).tolist()  # longer than the block
    out = list(generate_ids(model, prompt, SamplingConfig(max_new_tokens=100, temperature=1.5, seed=0)))
    assert len(out) == 100 and all(0 <= t < VOCAB for t in out)


OPTIONS = {"learned": {}, "rope": {"positions": "rope"}, "rmsnorm": {"norm": "rmsnorm"}, "qk_norm": {"qk_norm": True},
           "untied": {"tie_head": False}, "no_bias": {"bias": False}, "relu2": {"activation": "relu2"},
           "modern": MODERN}


@pytest.mark.parametrize("option", OPTIONS)
@torch.no_grad()
def test_flat_decode_step_equals_the_general_path_for_every_option(option, monkeypatch):
    """Generation's step (`_decode_step`, eval mode, one token with a cache) against the general path (the
    same model in train mode with dropout 0: the same computation through _extend): the same logits within
    float rounding at every step, past the block, at batch 2; and the same greedy text."""
    block = 8
    model = make_gpt(block, seed=2, **OPTIONS[option])
    calls = []
    real_step = GPT._decode_step
    monkeypatch.setattr(GPT, "_decode_step", lambda self, ids, cache: calls.append(1) or real_step(self, ids, cache))
    seq = torch.randint(0, VOCAB, (2, 3 * block + 2))

    def stepwise(train: bool) -> torch.Tensor:
        model.train(train)
        logits, state = model(seq[:, :3])
        out = [logits]
        for i in range(3, seq.size(1)):
            logits, state = model(seq[:, i : i + 1], state)
            out.append(logits)
        model.eval()
        return torch.cat(out, dim=1)

    general = stepwise(train=True)
    assert not calls
    flat = stepwise(train=False)
    assert len(calls) == seq.size(1) - 3  # every step took the flat path (sliding included)
    torch.testing.assert_close(flat, general, rtol=1e-5, atol=1e-5)
    assert general.abs().max() > 1.0  # logits of a few units: the comparison is at a real scale

    def greedy(train: bool) -> list[int]:
        model.train(train)
        ids, (logits, state) = [3, 1], model(torch.tensor([[3, 1]]))
        for _ in range(3 * block):
            ids.append(int(logits[0, -1].argmax()))
            logits, state = model(torch.tensor([[ids[-1]]]), state)
        model.eval()
        return ids

    assert greedy(train=False) == greedy(train=True)


def test_a_prompt_longer_than_the_context_is_cut_to_its_last_window():
    model = make_gpt(32)
    assert model.context_window == 32
    prompt = torch.randint(0, VOCAB, (100_000,)).tolist()  # took 133 s through the sliding context
    config = SamplingConfig(max_new_tokens=20, greedy=True)
    start = time.perf_counter()
    out = list(generate_ids(model, prompt, config))
    assert time.perf_counter() - start < 10
    assert out == list(generate_ids(model, prompt[-32:], config))  # the same prediction as the last window
    assert len(out) == 20


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_training_forward_is_causal(architecture):
    """Changing a later token never changes the logits of earlier positions."""
    model = make_gpt(16, **ARCHITECTURES[architecture])
    ids = torch.randint(0, VOCAB, (1, 16))
    other = ids.clone()
    other[0, 10] = (other[0, 10] + 1) % VOCAB
    a, b = model(ids)[0], model(other)[0]
    torch.testing.assert_close(a[:, :10], b[:, :10])
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_head_is_tied_and_parameters_count_once():
    model = build_model(model_config("gpt", vocab_size=68, block_size=128, layers=4, heads=4, embed=128))
    assert model.lm_head.weight is model.transformer.wte.weight
    d, layers = 128, 4
    per_block = 2 * 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d)
    assert model.num_parameters() == 68 * d + 128 * d + layers * per_block + 2 * d


def reference_modern_logits(model: GPT, ids: torch.Tensor) -> torch.Tensor:
    """The modern GPT written out plainly: RMS norms by hand, rotary positions as complex multiplication,
    attention as an explicitly masked softmax."""
    c = model.config
    hs, (B, T) = c.embed // c.heads, ids.shape
    angles = torch.arange(T)[:, None] * 10000.0 ** (-torch.arange(0, hs, 2) / hs)  # (T, hs / 2)
    turn = torch.polar(torch.ones_like(angles), angles)  # e^(i angle)

    def rms(z):
        return z / (z.pow(2).mean(-1, keepdim=True) + torch.finfo(z.dtype).eps).sqrt()

    def rope(z):  # the feature pairs (j, j + hs / 2) as complex numbers, turned by their position's angle
        turned = torch.complex(z[..., : hs // 2], z[..., hs // 2 :]) * turn
        return torch.cat([turned.real, turned.imag], dim=-1)

    causal = torch.ones(T, T, dtype=torch.bool).tril()
    x = model.transformer.wte.weight[ids]
    for block in model.transformer.h:
        q, k, v = (rms(x) @ block.attn.c_attn.weight.T).split(c.embed, dim=-1)
        q, k, v = (z.view(B, T, c.heads, hs).transpose(1, 2) for z in (q, k, v))
        q, k = rope(rms(q)), rope(rms(k))
        attention = (q @ k.transpose(-1, -2) / math.sqrt(hs)).masked_fill(~causal, float("-inf")).softmax(-1)
        x = x + (attention @ v).transpose(1, 2).reshape(B, T, c.embed) @ block.attn.c_proj.weight.T
        x = x + torch.relu(rms(x) @ block.mlp.c_fc.weight.T).square() @ block.mlp.c_proj.weight.T
    return rms(x) @ model.lm_head.weight.T


@torch.no_grad()
def test_modern_gpt_equals_a_plain_reference_implementation():
    model = make_gpt(12, seed=3, **MODERN)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.3)  # moderate logits, so the comparison is not dominated by a saturated softmax
    ids = torch.randint(0, VOCAB, (2, 12))
    torch.testing.assert_close(model(ids)[0], reference_modern_logits(model, ids), rtol=1e-4, atol=1e-4)


def test_rotary_attention_scores_depend_on_the_relative_position_only():
    cos, sin = rotary_tables(8, 40)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(m: int, n: int) -> float:  # query at position m, key at position n
        return float((rotate(q, cos[m : m + 1], sin[m : m + 1]) * rotate(k, cos[n : n + 1], sin[n : n + 1])).sum())

    assert score(3, 1) == pytest.approx(score(23, 21), abs=1e-5) == pytest.approx(score(2, 0), abs=1e-5)
    assert score(5, 5) == pytest.approx(float((q * k).sum()), abs=1e-5)  # same position: no net rotation
    assert abs(score(3, 1) - score(3, 2)) > 1e-3
    x = torch.randn(2, 3, 40, 8)
    torch.testing.assert_close(rotate(x, cos, sin).norm(dim=-1), x.norm(dim=-1))  # a rotation keeps lengths


def test_modern_options_parameters_and_initialisation():
    d, V, layers = 64, 68, 2
    model = build_model(model_config("gpt", vocab_size=V, block_size=32, layers=layers, heads=4, embed=d, **MODERN))
    assert model.lm_head.weight is not model.transformer.wte.weight
    assert model.num_parameters() == 2 * V * d + layers * 12 * d * d  # no biases, norm weights or position table
    # the rotary tables are rebuilt from the config, not saved with the weights
    assert not any(word in name for name in model.state_dict() for word in ("bias", "ln_", "wpe", "rotary"))
    for block in model.transformer.h:
        assert not block.attn.c_proj.weight.any() and not block.mlp.c_proj.weight.any()
    logits, _ = model(torch.randint(0, V, (2, 32)))
    assert not logits.any()  # a zero head: uniform predictions before the first step
    assert model.describe().endswith(", rope, rmsnorm, qk-norm, relu2, untied head, zero-init projections, "
                                     "no biases")
    assert model_config("gpt", **MODERN).gpt2_incompatibilities() == [
        "positions=rope", "norm=rmsnorm", "activation=relu2", "qk_norm", "an untied head", "no biases"]
    assert model_config("gpt", zero_init_proj=True).gpt2_incompatibilities() == []  # only an initialisation


def test_modern_gpt_learns_under_bf16_autocast_and_every_weight_gets_gradients():
    torch.manual_seed(0)
    model = build_model(model_config("gpt", vocab_size=VOCAB, block_size=16, layers=2, heads=2, embed=16,
                                     dropout=0.1, **MODERN))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3)
    ids = torch.arange(17).remainder(5).repeat(4, 1)  # a repeating pattern: learnable in a few steps
    losses = []
    for _ in range(40):
        with torch.autocast("cpu", dtype=torch.bfloat16):  # the modern path mixes fp32 norms with bf16 matmuls
            logits, _ = model(ids[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(VOCAB), abs=1e-6) and losses[-1] < 0.5 * losses[0]
    assert all(p.grad is not None and p.grad.any() for p in model.parameters())


@pytest.mark.parametrize("kwargs, match", [
    ({"embed": 30, "heads": 4}, "multiple of --heads"), ({"layers": 0}, "--layers"),
    ({"block_size": 0}, "--block-size"), ({"dropout": 1.0}, "--dropout"),
    ({"positions": "alibi"}, "--positions must be learned or rope"), ({"norm": "batchnorm"}, "--norm"),
    ({"activation": "swiglu"}, "--activation"), ({"positions": "rope", "embed": 12, "heads": 4}, "even head size"),
])
def test_bad_gpt_settings_are_user_errors(kwargs, match):
    with pytest.raises(TinyLMError, match=match):
        model_config("gpt", **kwargs)


def cli_config(*argv: str) -> tinylm.RunConfig:
    args = build_parser().parse_args(["train", *argv])
    assert isinstance(args, argparse.Namespace)
    return config_from_args(args)


def test_model_block_size_is_the_data_block_size():
    config = cli_config("--model", "gpt", "--preset", "gpt-cpu", "--block-size", "32", "--layers", "2")
    assert config.model.block_size == config.data.block_size == 32 and config.model.layers == 2
    assert tinylm.RunConfig.from_dict(config.to_dict()).model == config.model
    api = tinylm.RunConfig(data=tinylm.DataConfig(block_size=48), model=model_config("gpt"))
    assert api.model.block_size == 48


def test_presets():
    small = cli_config("--preset", "gpt-cpu")
    small.model.vocab_size = 68  # Tiny Shakespeare's characters + <pad>, <unk>, <eos>
    assert build_model(small.model).num_parameters() < 1_000_000
    big = cli_config("--model", "gpt", "--preset", "gpt-gpu")
    c = big.model
    assert (c.layers, c.heads, c.embed, c.block_size, c.dropout) == (6, 6, 384, 256, 0.2)
    assert big.data.block_size == 256


def test_gpu_fast_preset_and_architecture_flags():
    fast = cli_config("--preset", "gpu-fast")
    assert {name: getattr(fast.model, name) for name in MODERN} == MODERN
    assert (fast.model.layers, fast.model.embed, fast.data.block_size, fast.train.batch_size) == (6, 384, 256, 128)
    assert (fast.train.optimizer, fast.train.lr_schedule, fast.train.warmup_steps, fast.train.patience) == (
        "muon", "cosine", 50, 0)
    gpu = cli_config("--preset", "gpt-gpu")
    fast.model.vocab_size = gpu.model.vocab_size = 68
    assert build_model(fast.model).num_parameters() <= build_model(gpu.model).num_parameters()  # <= nanoGPT's
    classic = cli_config("--preset", "gpu-fast", "--positions", "learned", "--norm", "layernorm", "--no-qk-norm",
                         "--activation", "gelu", "--tie-head", "--no-zero-init-proj", "--bias", "--optimizer", "adamw")
    assert classic.model == model_config("gpt", layers=6, heads=6, embed=384, dropout=0.1, block_size=256)
    assert classic.train.optimizer == "adamw"
    other = cli_config("--model", "gpt", "--optimizer", "muon", "--muon-lr", "0.05", "--fused", "--qk-norm")
    assert (other.train.muon_lr, other.train.fused, other.model.qk_norm) == (0.05, True, True)


def test_modern_gpt_trains_reloads_and_refuses_gpt2_export(tmp_path, small_corpus):
    config = tinylm.RunConfig(
        data=tinylm.DataConfig(source=str(small_corpus), block_size=32),
        model=model_config("gpt", layers=1, heads=2, embed=32, dropout=0.0, **MODERN),
        train=tinylm.TrainConfig(epochs=2, max_steps=30, batch_size=16, lr=5e-3, warmup_steps=5, sample_tokens=20),
    )
    run = tinylm.train(config, out=tmp_path / "run", progress=False, echo=lambda s: None)
    again = tinylm.load(tmp_path / "run")
    ids = torch.tensor([again.tokenizer.encode("ROMEO: what, ho!")])
    torch.testing.assert_close(again.module(ids)[0], run.module(ids)[0])
    assert again.module(ids)[0].std() > 0  # trained away from the zero-init head
    with pytest.raises(TinyLMError, match=r"GPT-2-compatible.*positions=rope, norm=rmsnorm, activation=relu2, "
                                          r"qk_norm, an untied head, no biases") as error:
        tinylm.export_run(tmp_path / "run", tmp_path / "hf", format="transformers")
    assert "\n" not in str(error.value)


def test_gpt_with_bpe_trains_end_to_end_and_reloads(tmp_path, shakespeare_text):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(shakespeare_text[:16_000], encoding="utf-8")
    config = tinylm.RunConfig(
        data=tinylm.DataConfig(source=str(corpus), block_size=32),
        tokenizer=tinylm.TokenizerConfig("bpe", vocab_size=320),
        model=model_config("gpt", layers=1, heads=2, embed=32, dropout=0.0),
        train=tinylm.TrainConfig(epochs=2, batch_size=8, lr=5e-3, warmup_steps=5, sample_tokens=20),
    )
    run = tinylm.train(config, out=tmp_path / "run", progress=False, echo=lambda s: None)
    losses = [m["val_loss"] for m in run.metrics]
    assert len(losses) == 2 and losses[1] < losses[0]

    again = tinylm.load(tmp_path / "run")
    assert again.tokenizer.kind == "bpe" and again.config.model == run.config.model
    ids = torch.tensor([again.tokenizer.encode("ROMEO: what, ho!")])
    torch.testing.assert_close(again.module(ids)[0], run.module(ids)[0])
    text = again.generate("ROMEO:", max_new_tokens=40, seed=0)
    assert text.startswith("ROMEO:") and len(text) > len("ROMEO:")

    # bits per character: total bits over the characters of the text, not over its (fewer) bpe tokens
    val_text = shakespeare_text[:16_000][int(16_000 * 0.9):]
    result = again.evaluate(val_text)
    n_tokens = len(again.tokenizer.encode(val_text))
    assert result.chars == round(len(val_text) * result.tokens / n_tokens) and result.chars > result.tokens
    assert math.isclose(result.bits_per_char, result.loss * result.tokens / math.log(2) / result.chars)
    assert math.isclose(result.loss, losses[1], rel_tol=1e-5)
