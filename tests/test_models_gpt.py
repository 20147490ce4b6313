"""The GPT family (tinylm/models/gpt.py): KV cache, the sliding context, presets, end-to-end training.
The shared model contract (shapes, carried state, config round trip) is in test_models.py."""

from __future__ import annotations

import argparse
import math

import pytest
import torch

import tinylm
from tinylm.cli import build_parser
from tinylm.cli.train import config_from_args
from tinylm.errors import TinyLMError
from tinylm.generation import SamplingConfig, choose_next, generate_ids
from tinylm.models import build_model, model_config
from tinylm.models.gpt import GPT

VOCAB = 11


def make_gpt(block_size: int, seed: int = 0) -> GPT:
    """A small random GPT with large weights, so its greedy choices are far from ties."""
    torch.manual_seed(seed)
    model = build_model(model_config("gpt", vocab_size=VOCAB, block_size=block_size, layers=2, heads=2,
                                     embed=16, dropout=0.0)).eval()
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


@pytest.mark.parametrize("block", [1, 7, 8])
def test_kv_cache_generation_equals_no_cache_past_the_block(block):
    model = make_gpt(block)
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


@torch.no_grad()
def test_cached_logits_equal_full_windows_at_every_step_and_cache_stays_in_the_block():
    block = 8
    model = make_gpt(block, seed=1)
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


def test_training_forward_is_causal():
    """Changing a later token never changes the logits of earlier positions."""
    model = make_gpt(16)
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


@pytest.mark.parametrize("kwargs, match", [
    ({"embed": 30, "heads": 4}, "multiple of --heads"), ({"layers": 0}, "--layers"),
    ({"block_size": 0}, "--block-size"), ({"dropout": 1.0}, "--dropout"),
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
