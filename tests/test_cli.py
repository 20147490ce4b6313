"""The `tinylm` command, run as a user runs it (a subprocess), including its error contract."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest

TINY = ["--hidden", "32", "--embed", "16", "--layers", "1", "--block-size", "32", "--batch-size", "32",
        "--warmup-steps", "5", "--lr", "0.01", "--quiet", "--sample-tokens", "30"]


def tinylm(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "tinylm", *map(str, args)], capture_output=True, text=True,
                            timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"tinylm {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, data_dir):
    folder = tmp_path_factory.mktemp("cli")
    corpus = folder / "corpus.txt"
    corpus.write_text((data_dir / "tinyshakespeare/input.txt").read_text(encoding="utf-8")[:30_000],
                      encoding="utf-8")
    result = tinylm("train", "--data", corpus, "--model", "gru", "--epochs", "2", "--out", folder / "run", *TINY)
    assert "parameters" in result.stdout and "epoch 2/2" in result.stdout
    return folder / "run"


def test_train_writes_the_run_directory_contract(cli_run):
    for name in ["config.json", "tokenizer.json", "model.safetensors", "metrics.jsonl", "loss.png"]:
        assert (cli_run / name).is_file()
    records = [json.loads(line) for line in (cli_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all({"epoch", "train_loss", "val_loss"} <= r.keys() for r in records)
    config = json.loads((cli_run / "config.json").read_text())
    assert config["model"]["cell"] == "gru" and config["model"]["hidden"] == 32


def test_sample_is_streamed_and_repeatable_with_a_seed(cli_run):
    args = ["sample", cli_run, "--prompt", "ROMEO:", "--max-new-tokens", 40, "--temperature", 0.8, "--seed", 4]
    first, second = tinylm(*args).stdout, tinylm(*args).stdout
    assert first == second and first.startswith("ROMEO:")
    greedy = tinylm("sample", cli_run, "--prompt", "ROMEO:", "--greedy", "--max-new-tokens", 20).stdout
    assert greedy.startswith("ROMEO:") and len(greedy.rstrip("\n")) >= len("ROMEO:") + 1


def test_eval_json_keys(cli_run, tmp_path):
    out = json.loads(tinylm("eval", cli_run, "--json").stdout)
    assert {"loss", "perplexity", "bits_per_char", "tokens"} <= out.keys()
    assert out["perplexity"] == pytest.approx(2.718281828 ** out["loss"], rel=1e-6)
    text = tmp_path / "other.txt"
    text.write_text("Wherefore art thou, ROMEO?\n" * 3, encoding="utf-8")
    out = json.loads(tinylm("eval", cli_run, "--text", text, "--json").stdout)
    assert out["tokens"] == len("Wherefore art thou, ROMEO?\n") * 3 - 1


def test_resume_to_more_epochs(cli_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(cli_run, copy)
    tinylm("train", "--resume", copy, "--epochs", 3, "--quiet")
    records = [json.loads(line) for line in (copy / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]


@pytest.mark.parametrize("args, message", [
    (["sample", "no/such/run"], "does not exist"),
    (["eval", "no/such/run", "--json"], "does not exist"),
    (["train", "--data", "no-such-corpus", "--epochs", "1"], "neither a file"),
    (["train", "--model", "transformer-xl"], "unknown model"),
    (["train", "--preset", "nope"], "unknown preset"),
])
def test_user_errors_are_one_line_with_exit_code_2(args, message):
    result = tinylm(*args, check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("flags", [["--temperature", "0"], ["--temperature", "nan"], ["--top-k", "0"],
                                   ["--top-p", "1.5"], ["--max-new-tokens", "-5"]])
def test_bad_sampling_flags(cli_run, flags):
    result = tinylm("sample", cli_run, *flags, check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr and result.stdout == ""


def test_empty_corpus_and_existing_run(cli_run, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n\n", encoding="utf-8")
    result = tinylm("train", "--data", empty, "--out", tmp_path / "x", check=False)
    assert result.returncode == 2 and "empty" in result.stderr
    before = (cli_run / "model.safetensors").read_bytes()
    result = tinylm("train", "--data", empty, "--out", cli_run, check=False)
    assert result.returncode == 2
    assert (cli_run / "model.safetensors").read_bytes() == before


def test_machine_flags_on_every_command_that_trains_or_generates():
    from tinylm.cli import build_parser

    parser = build_parser()
    for command in (["train"], ["sample", "RUN"], ["eval", "RUN"], ["temperature", "RUN"], ["compare"],
                    ["serve", "RUN"]):
        args = parser.parse_args([*command, "--device", "cpu", "--precision", "fp32", "--threads", "1"])
        assert (args.device, args.precision, args.threads) == ("cpu", "fp32", 1), command


def test_bf16_asked_for_where_it_cannot_run_is_one_line(cli_run, tmp_path):
    env_run = subprocess.run([sys.executable, "-m", "tinylm", "train", "--resume", str(cli_run), "--epochs", "3",
                              "--precision", "bf16", "--quiet"], capture_output=True, text=True, timeout=300,
                             env={**__import__("os").environ, "TINYLM_CPU_BF16": "0"})
    assert env_run.returncode == 2
    assert env_run.stderr.strip().splitlines()[-1].startswith("error: --precision bf16")
    assert "Traceback" not in env_run.stderr


def test_cpu_best_is_one_recipe_on_every_cpu_class(monkeypatch):
    from tinylm.cli import build_parser
    from tinylm.cli.train import config_from_args
    from tinylm.training.presets import PRESETS

    def config(*flags):
        return config_from_args(build_parser().parse_args(["train", "--preset", "cpu-best", *flags]))

    monkeypatch.setenv("TINYLM_CPU_BF16", "0")
    without_bf16 = config()
    monkeypatch.setenv("TINYLM_CPU_BF16", "1")
    assert config() == without_bf16  # one process with all its threads on both classes (measured over seeds)
    assert without_bf16.train.processes == 1 and without_bf16.train.time_budget == 203.0
    assert PRESETS["cpu-best-fp32"] == PRESETS["cpu-best"]  # the old name of its fp32 side still works
    assert config("--precision", "fp32").train.precision == "fp32"
    first_run = config_from_args(build_parser().parse_args(["train"]))
    # the first run is cpu-best's LSTM, windows and optimiser with a shorter budget (measured together over seeds)
    assert (first_run.model, first_run.data) == (without_bf16.model, without_bf16.data)
    assert first_run.train.lr == without_bf16.train.lr and first_run.train.time_budget < 203.0
    # cpu-best trains the LSTM's weight matrices with Muon (measured over seeds); the first run keeps AdamW
    assert (without_bf16.train.optimizer, first_run.train.optimizer) == ("muon", "adamw")
    # no early stopping under a decay to zero: a plateau before the last epochs is no end (Faust, bench/README.md)
    assert first_run.train.patience == 0 == without_bf16.train.patience and first_run.train.epochs == 30


def test_the_default_preset_applies_only_without_model_or_preset():
    from tinylm.cli import build_parser
    from tinylm.cli.train import config_from_args
    from tinylm.config import DataConfig

    default = config_from_args(build_parser().parse_args(["train"]))
    assert default.train.stateful and default.train.time_budget and default.model.hidden == 384
    plain = config_from_args(build_parser().parse_args(["train", "--model", "lstm"]))
    assert not plain.train.stateful and plain.train.time_budget is None and plain.model.hidden == 256
    lines = config_from_args(build_parser().parse_args(["train", "--lines"]))
    assert not lines.train.stateful  # one sample per line: no single stream to carry the state through
    # the short windows go with the carried state: a line or a --target last window keeps the longer default
    assert default.data.block_size < DataConfig.block_size == lines.data.block_size
    last = config_from_args(build_parser().parse_args(["train", "--target", "last"]))
    assert not last.train.stateful and last.data.block_size == DataConfig.block_size
    assert config_from_args(build_parser().parse_args(["train", "--lines", "--block-size", "48"])).data.block_size == 48


def test_importing_tinylm_is_light_and_its_names_load_on_use():
    """`import tinylm` loads no torch: the command answers --help, mistakes and Ctrl-C while it starts."""
    code = ("import sys, tinylm; light = 'torch' not in sys.modules; names = sorted(tinylm.__all__); "
            "[getattr(tinylm, n) for n in names]; print(light, 'torch' in sys.modules, len(names))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[:2] == ["True", "True"] and int(out[2]) > 20


@pytest.mark.parametrize("delay", [0.1, 0.6])
def test_ctrl_c_while_the_command_starts_is_one_line(tmp_path, delay):
    import signal
    import time

    corpus = tmp_path / "c.txt"
    corpus.write_text("To be, or not to be, that is the question. " * 200)
    proc = subprocess.Popen([sys.executable, "-m", "tinylm", "train", "--data", str(corpus), "--out",
                             str(tmp_path / "run"), "--model", "lstm", "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    # 130, or killed by SIGINT after the message (a shell shows both as 130)
    assert proc.returncode in (130, -signal.SIGINT) and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].startswith("interrupted"), err


# -- flags generated from the config dataclasses (cli/_fields.py) ----------------------------------------------
def _command_parser(name: str):
    import argparse

    from tinylm.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


def _all_flags(parser) -> set[str]:
    """Every option string of `parser` and of its subcommands, at any depth."""
    import argparse

    flags = set()
    for action in parser._actions:
        flags.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                flags |= _all_flags(child)
    return flags


def _train_config(*flags):
    from tinylm.cli import build_parser
    from tinylm.cli.train import config_from_args

    return config_from_args(build_parser().parse_args(["train", *map(str, flags)]))


def _finetune_configs(*flags):
    from tinylm.cli import build_parser
    from tinylm.cli.finetune import configs_from_args

    return configs_from_args(build_parser().parse_args(["finetune", "--base", "gpt2", *map(str, flags)]))


def test_every_config_field_has_a_flag():
    from tinylm.cli import build_parser
    from tinylm.cli.finetune import DATA_FIELDS
    from tinylm.cli.train import MODEL_FIELDS_SET_ELSEWHERE
    from tinylm.config import DataConfig, TrainConfig
    from tinylm.models import FAMILIES, MODEL_NAMES
    from tinylm.tokenizers import TokenizerConfig
    from tinylm.training.finetune import FinetuneConfig

    def fields(config, leave_out=()):
        return {f.name for f in dataclasses.fields(config)} - set(leave_out)

    train = set(build_parser().parse_args(["train"])._config_flags.values())
    trainable = {family for family, _ in MODEL_NAMES.values()}
    assert {"rnn", "gpt", "markov"} <= trainable
    expected = ({("data", name) for name in fields(DataConfig)}
                | {("tokenizer", name) for name in fields(TokenizerConfig)}
                | {("train", name) for name in fields(TrainConfig)}
                | {("model", name) for family in trainable
                   for name in fields(FAMILIES[family].config, MODEL_FIELDS_SET_ELSEWHERE)})
    assert train == expected
    finetune = set(build_parser().parse_args(["finetune", "--base", "b", "--data", "d"])._config_flags.values())
    assert finetune == ({("data", name) for name in DATA_FIELDS}
                        | {("finetune", name) for name in fields(FinetuneConfig)})


def test_every_config_field_with_a_flag_has_a_docstring():
    from tinylm.cli._fields import field_docs
    from tinylm.config import DataConfig, TrainConfig
    from tinylm.models import FAMILIES
    from tinylm.tokenizers import TokenizerConfig
    from tinylm.training.finetune import FinetuneConfig

    for config in [DataConfig, TokenizerConfig, TrainConfig, FinetuneConfig, *(f.config for f in FAMILIES.values())]:
        undocumented = [f.name for f in dataclasses.fields(config) if not field_docs(config).get(f.name)]
        assert not undocumented, f"{config.__name__}: {undocumented}"


@dataclasses.dataclass
class _Documented:
    size: int = 3
    """How many (e.g. three). Another sentence."""
    plain: str = "x"
    mode: typing.Literal["a", "b"] = "a"
    """a or b; `size` says how many."""
    pair: tuple[float, float] = (0.5, 1.0)
    """Two numbers."""
    maybe: float | None = None
    """An optional number."""
    switch: bool = True
    """A switch."""
    told: int = 1
    """Says its default: 1."""


def test_field_docstrings_become_flags_types_and_help():
    import argparse

    from tinylm.cli._fields import add_config_flags, field_docs, given

    assert field_docs(_Documented) == {"size": "How many (e.g. three). Another sentence.",
                                       "mode": "a or b; `size` says how many.", "pair": "Two numbers.",
                                       "maybe": "An optional number.", "switch": "A switch.",
                                       "told": "Says its default: 1."}
    parser = argparse.ArgumentParser()
    flags = add_config_flags(parser, _Documented, "demo", names={"plain": ["--plain", "--simple"]})
    assert flags == {n: ("demo", n) for n in ("size", "plain", "mode", "pair", "maybe", "switch", "told")}
    helps = {a.dest: a.help for a in parser._actions}
    assert helps["size"] == "how many (e.g. three) (default 3)"
    assert helps["mode"] == "a or b; --size says how many (default a)"
    assert helps["pair"] == "two numbers (default 0.5 1)"
    assert helps["maybe"] == "an optional number" and helps["switch"] == "a switch (default on)"
    assert helps["told"] == "says its default: 1"  # not twice
    assert helps["plain"] == "(default x)"
    nothing = parser.parse_args([])
    assert all(getattr(nothing, n) is None for n in flags) and given(nothing, flags) == {"demo": {}}
    args = parser.parse_args(["--size", "4", "--simple", "y", "--mode", "b", "--pair", "0.1", "0.2", "--maybe",
                              "2.5", "--no-switch"])
    assert given(args, flags) == {"demo": {"size": 4, "plain": "y", "mode": "b", "pair": [0.1, 0.2], "maybe": 2.5,
                                           "switch": False}}
    with pytest.raises(SystemExit):
        parser.parse_args(["--mode", "c"])


def test_train_help_comes_from_the_field_docstrings():
    from tinylm.cli._fields import field_docs, first_sentence
    from tinylm.config import DataConfig, TrainConfig
    from tinylm.tokenizers import TokenizerConfig

    parser = _command_parser("train")
    helps = {a.dest: a.help for a in parser._actions}
    sections = {"data": DataConfig, "tokenizer": TokenizerConfig, "train": TrainConfig}
    flags = parser.get_default("_config_flags")
    for dest, (section, name) in flags.items():
        if section in sections and name not in ("device", "precision", "threads"):  # those: cli/_machine.py's
            words = first_sentence(field_docs(sections[section])[name]).split()[1:4]
            assert " ".join(words) in helps[dest].replace("%%", "%"), (dest, helps[dest])
    assert helps["lr"] == "peak learning rate (default 0.003)"
    assert helps["batch_size"] == "windows (or lines) per batch in each process (default 64)"
    assert helps["betas"].endswith("(default 0.9 0.99)") and helps["sample_temperature"].endswith("(default 0.8)")
    assert helps["tie_head"].startswith("gpt: ") and helps["tie_head"].endswith("(default on)")
    assert "rnn, gru, lstm: " in helps["layers"] and "gpt: " in helps["layers"]  # one flag for both families
    assert "(default" not in helps["stride"]  # None: the docstring says what the default is


OLD_TRAIN_FLAGS = [  # every flag `tinylm train` had before its flags were generated, and the field it sets
    (["--data", "x.txt"], "data", "source", "x.txt"),
    (["--val-data", "v.txt"], "data", "val_source", "v.txt"),
    (["--val-fraction", "0.2"], "data", "val_fraction", 0.2),
    (["--encoding", "latin-1"], "data", "encoding", "latin-1"),
    (["--text-column", "body"], "data", "text_column", "body"),
    (["--hf-split", "validation"], "data", "hf_split", "validation"),
    (["--hf-config", "raw"], "data", "hf_config", "raw"),
    (["--strip-gutenberg"], "data", "strip_gutenberg", True),
    (["--lines"], "data", "lines", True),
    (["--target", "last"], "data", "target", "last"),
    (["--block-size", "64"], "data", "block_size", 64),
    (["--maxlen", "40"], "data", "block_size", 40),
    (["--stride", "32"], "data", "stride", 32),
    (["--step", "3"], "data", "stride", 3),
    (["--tokenizer", "word"], "tokenizer", "kind", "word"),
    (["--vocab-size", "500"], "tokenizer", "vocab_size", 500),
    (["--min-freq", "2"], "tokenizer", "min_freq", 2),
    (["--model", "gru"], "model", "cell", "gru"),
    (["--preset", "exercise"], "data", "target", "last"),
    (["--layers", "3"], "model", "layers", 3),
    (["--hidden", "32"], "model", "hidden", 32),
    (["--embed", "16"], "model", "embed", 16),
    (["--dropout", "0.3"], "model", "dropout", 0.3),
    (["--head", "mlp"], "model", "head", "mlp"),
    (["--model", "gpt", "--heads", "2"], "model", "heads", 2),
    (["--model", "gpt", "--positions", "rope"], "model", "positions", "rope"),
    (["--model", "gpt", "--norm", "rmsnorm"], "model", "norm", "rmsnorm"),
    (["--model", "gpt", "--qk-norm"], "model", "qk_norm", True),
    (["--preset", "gpu-fast", "--no-qk-norm"], "model", "qk_norm", False),
    (["--model", "gpt", "--activation", "relu2"], "model", "activation", "relu2"),
    (["--model", "gpt", "--no-tie-head"], "model", "tie_head", False),
    (["--preset", "gpu-fast", "--tie-head"], "model", "tie_head", True),
    (["--model", "gpt", "--zero-init-proj"], "model", "zero_init_proj", True),
    (["--preset", "gpu-fast", "--no-zero-init-proj"], "model", "zero_init_proj", False),
    (["--model", "gpt", "--no-bias"], "model", "bias", False),
    (["--preset", "gpu-fast", "--bias"], "model", "bias", True),
    (["--model", "markov", "--order", "3"], "model", "order", 3),
    (["--model", "markov", "--smoothing", "witten-bell"], "model", "smoothing", "witten-bell"),
    (["--epochs", "7"], "train", "epochs", 7),
    (["--max-steps", "10"], "train", "max_steps", 10),
    (["--batch-size", "16"], "train", "batch_size", 16),
    (["--lr", "0.01"], "train", "lr", 0.01),
    (["--optimizer", "muon"], "train", "optimizer", "muon"),
    (["--muon-lr", "0.02"], "train", "muon_lr", 0.02),
    (["--fused"], "train", "fused", True),
    (["--preset", "gpu-fast", "--no-fused"], "train", "fused", False),
    (["--weight-decay", "0.1"], "train", "weight_decay", 0.1),
    (["--lr-schedule", "cosine"], "train", "lr_schedule", "cosine"),
    (["--min-lr-ratio", "0.05"], "train", "min_lr_ratio", 0.05),
    (["--warmup-steps", "10"], "train", "warmup_steps", 10),
    (["--grad-clip", "0.5"], "train", "grad_clip", 0.5),
    (["--patience", "2"], "train", "patience", 2),
    (["--seed", "7"], "train", "seed", 7),
    (["--eval-batch-size", "32"], "train", "eval_batch_size", 32),
    (["--stateful"], "train", "stateful", True),
    (["--time-budget", "30"], "train", "time_budget", 30.0),
    (["--logger", "csv"], "train", "logger", "csv"),
    (["--wandb-project", "proj"], "train", "wandb_project", "proj"),
    (["--run-name", "name"], "train", "run_name", "name"),
    (["--checkpoint-every", "100"], "train", "checkpoint_every", 100),
    (["--sample-prompt", "ROMEO:"], "train", "sample_prompt", "ROMEO:"),
    (["--sample-tokens", "50"], "train", "sample_tokens", 50),
    (["--device", "cpu"], "train", "device", "cpu"),
    (["--precision", "fp32"], "train", "precision", "fp32"),
    (["--threads", "1"], "train", "threads", 1),
    (["--processes", "2"], "train", "processes", 2),
]
OLD_TRAIN_OTHER_FLAGS = ["--out", "--overwrite", "--resume", "--quiet"]  # no config field


@pytest.mark.parametrize("flags, section, name, value", OLD_TRAIN_FLAGS, ids=lambda v: str(v))
def test_every_old_train_flag_sets_what_it_set(flags, section, name, value):
    context = ["--model", "lstm"]  # the plain defaults, not the default preset
    if flags[0] in ("--model", "--preset"):  # the flag itself, or the model or preset the flag goes with
        context, flags = ([], flags) if len(flags) == 2 else (flags[:2], flags[2:])
    assert getattr(getattr(_train_config(*context, *flags), section), name) == value
    assert getattr(getattr(_train_config(*context), section), name) != value  # the flag made the difference


def test_old_train_flags_are_all_there():
    flags = _all_flags(_command_parser("train"))
    old = {f for case in OLD_TRAIN_FLAGS for f in case[0] if f.startswith("--")} | set(OLD_TRAIN_OTHER_FLAGS)
    assert len(old) == 70 and old <= flags  # 70: the old parser's option strings, --help aside


def test_old_finetune_flags_set_what_they_set():
    from tinylm.config import DataConfig
    from tinylm.training.finetune import FinetuneConfig

    assert _finetune_configs("--data", "x.txt") == (DataConfig(source="x.txt"), FinetuneConfig())
    data, config = _finetune_configs(
        "--data", "x.txt", "--val-data", "v.txt", "--val-fraction", 0.2, "--encoding", "latin-1", "--text-column",
        "body", "--hf-split", "validation", "--hf-config", "raw", "--block-size", 64, "--lines", "--epochs", 2,
        "--lr", 1e-4, "--batch-size", 4, "--patience", 1, "--warmup-steps", 5, "--weight-decay", 0.1, "--seed", 3,
        "--logger", "csv", "--wandb-project", "proj", "--run-name", "name", "--sample-prompt", "Hi",
        "--sample-tokens", 20, "--device", "cpu", "--precision", "fp32", "--threads", 1)
    assert data == DataConfig(source="x.txt", val_source="v.txt", val_fraction=0.2, encoding="latin-1",
                              text_column="body", hf_split="validation", hf_config="raw")
    assert config == FinetuneConfig(epochs=2, lr=1e-4, batch_size=4, block_size=64, lines=True, patience=1,
                                    warmup_steps=5, weight_decay=0.1, seed=3, logger="csv", wandb_project="proj",
                                    run_name="name", sample_prompt="Hi", sample_tokens=20, device="cpu",
                                    precision="fp32", threads=1)
    old = ("--base --batch-size --block-size --data --device --encoding --epochs --hf-config --hf-split --lines "
           "--logger --lr --out --overwrite --patience --precision --quiet --run-name --sample-prompt --sample-tokens "
           "--seed --text-column --threads --val-data --val-fraction --wandb-project --warmup-steps --weight-decay")
    assert set(old.split()) <= _all_flags(_command_parser("finetune"))


def test_a_preset_and_flags_give_the_config_they_gave_before():
    from tinylm.config import DataConfig, RunConfig, TrainConfig
    from tinylm.models import model_config
    from tinylm.tokenizers import TokenizerConfig
    from tinylm.training.presets import PRESETS

    preset = PRESETS["gpt-cpu"]
    config = _train_config("--preset", "gpt-cpu", "--heads", 2, "--lr", 0.01, "--maxlen", 64, "--betas", 0.8, 0.9)
    assert config == RunConfig(
        data=DataConfig(**{**preset["data"], "block_size": 64}), tokenizer=TokenizerConfig(),
        model=model_config("gpt", **{**{k: v for k, v in preset["model"].items() if k != "name"}, "heads": 2}),
        train=TrainConfig(**{**preset["train"], "lr": 0.01, "betas": (0.8, 0.9)}))
    exercise = _train_config("--preset", "exercise", "--epochs", 2)
    assert (exercise.data.target, exercise.data.stride, exercise.model.head, exercise.train.epochs) == \
        ("last", 3, "mlp", 2)
    assert not _train_config("--no-stateful").train.stateful  # the default preset's setting, undone


def test_flag_choices_are_what_the_configs_accept():
    """The choices a flag offers are the values its config's own validation accepts (no second definition that
    could drift from it)."""
    from tinylm.config import DataConfig, TrainConfig
    from tinylm.errors import TinyLMError
    from tinylm.models import FAMILIES

    parser = _command_parser("train")
    flags = parser.get_default("_config_flags")
    checked = set()
    for action in parser._actions:
        if action.choices is None or action.dest not in flags:
            continue
        section, name = flags[action.dest]
        configs = {"data": [DataConfig], "train": [TrainConfig]}.get(section) or [
            family.config for family in FAMILIES.values()
            if name in {f.name for f in dataclasses.fields(family.config)}]
        for config in configs:
            for value in action.choices:
                assert getattr(config(**{name: value}), name) == value
            with pytest.raises(TinyLMError):
                config(**{name: "no-such-choice"})
        checked.add(name)
    assert checked == {"target", "head", "positions", "norm", "activation", "smoothing", "optimizer", "lr_schedule",
                       "precision", "logger"}


@pytest.mark.parametrize("command", ["train", "finetune"])
def test_help_renders(command):
    result = tinylm(command, "--help")
    assert result.returncode == 0 and result.stderr == ""
    assert "--block-size" in result.stdout and "peak learning rate" in result.stdout
    if command == "train":
        assert "--maxlen" in result.stdout and "--betas BETA1 BETA2" in result.stdout


def test_the_readme_flag_tables_name_real_flags():
    import re

    from tinylm.cli import build_parser

    flags = _all_flags(build_parser())
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    table_flags = {flag for line in readme.splitlines() if line.startswith("|")
                   for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", line)}
    assert {"--data", "--model", "--device", "--precision", "--threads"} <= table_flags
    assert table_flags - flags == set()


def test_resume_names_the_flags_it_ignores(cli_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(cli_run, copy)
    result = tinylm("train", "--resume", copy, "--epochs", 3, "--quiet", "--lr", 0.5, "--val-data", "x.txt",
                    "--tokenizer", "word", "--threads", 1)
    note = next(line for line in result.stderr.splitlines() if line.startswith("note: --resume"))
    assert note.split("ignored: ")[1].split() == ["--val-data", "--tokenizer", "--lr"]
    config = json.loads((copy / "config.json").read_text())
    assert config["train"]["lr"] == 0.01 and config["tokenizer"]["kind"] == "char"
