"""The device, precision and thread policy (tinylm/machine/devices.py): both sides of every hardware-dependent choice,
on any machine (TINYLM_CPU_BF16 forces the no-bf16 side; failing or slow bf16 kernels are simulated)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tinylm.errors import TinyLMError
from tinylm.machine import devices
from tinylm.models import build_model, model_config

CPU = torch.device("cpu")


def tiny_lstm():
    return build_model(model_config("lstm", vocab_size=20, embed=8, hidden=16, layers=1, dropout=0.0))


def batch(vocab: int = 20):
    x = torch.randint(vocab, (4, 12), generator=torch.Generator().manual_seed(0))
    return x, torch.roll(x, -1, 1)


@pytest.fixture
def no_bf16(monkeypatch):
    monkeypatch.setenv(devices.CPU_BF16_ENV, "0")


@pytest.fixture
def claims_bf16(monkeypatch):
    """The CPU counts as one with native bf16, whatever it is; the probe's measurements are simulated."""
    monkeypatch.setenv(devices.CPU_BF16_ENV, "1")


def test_resolve_device_auto_and_refusals():
    assert devices.resolve_device("auto").type in ("cpu", "cuda", "mps")
    assert devices.resolve_device(None) == devices.resolve_device("auto")
    assert devices.resolve_device("cpu") == CPU
    with pytest.raises(TinyLMError, match="unknown device"):
        devices.resolve_device("tpu")
    with pytest.raises(TinyLMError, match="unknown device"):
        devices.resolve_device("meta")
    if not torch.cuda.is_available():
        with pytest.raises(TinyLMError, match="no CUDA GPU"):
            devices.resolve_device("cuda")
    if not devices.mps_available():
        with pytest.raises(TinyLMError, match="no usable Apple GPU"):
            devices.resolve_device("mps")


def test_the_no_bf16_side_trains_and_generates_in_fp32(no_bf16):
    assert not devices.native_bf16_cpu() and not devices.bf16_packing_supported()
    choice = devices.training_precision("auto", CPU, tiny_lstm(), batch())
    assert choice.name == "fp32" and "no native bf16" in choice.reason and "TINYLM_CPU_BF16=0" in choice.reason
    candidates = devices.generation_candidates("auto", CPU)
    assert candidates[0] == "fp32" and "bf16" not in candidates  # int8 (bf16 activations in ATen) is measured
    with pytest.raises(TinyLMError, match="cannot compute in bf16"):  # asked for explicitly: one line, no crash
        devices.training_precision("bf16", CPU, tiny_lstm(), batch())


def test_a_failing_bf16_kernel_falls_back_to_fp32(claims_bf16, monkeypatch):
    real_step = devices._step

    def step(model, batch, device, bf16):
        if bf16:
            raise RuntimeError("could not create a primitive descriptor for the LSTM forward propagation primitive")
        return real_step(model, batch, device, bf16)

    monkeypatch.setattr(devices, "_step", step)
    choice = devices.training_precision("auto", CPU, tiny_lstm(), batch())
    assert choice.name == "fp32" and "failed" in choice.reason and "primitive descriptor" in choice.reason
    monkeypatch.setattr(devices, "bf16_packing_supported", lambda: True)
    with pytest.raises(TinyLMError, match="--precision bf16 cannot run this model here"):
        devices.training_precision("bf16", CPU, tiny_lstm(), batch())


@pytest.mark.parametrize("bf16_seconds, fp32_seconds, expected", [(2.0, 1.0, "fp32"), (1.0, 1.02, "fp32"),
                                                                   (1.0, 2.0, "bf16")])
def test_bf16_is_kept_only_where_the_probe_finds_it_faster(claims_bf16, monkeypatch, bf16_seconds, fp32_seconds,
                                                           expected):
    monkeypatch.setattr(devices, "_timed_steps",
                        lambda model, batch, device, precisions, repeats: [bf16_seconds, fp32_seconds][
                            :len(precisions)])
    choice = devices.training_precision("auto", CPU, tiny_lstm(), batch())
    assert choice.name == expected
    assert ("not faster" in choice.reason) == (expected == "fp32")


def test_the_probe_leaves_the_model_and_rng_as_they_were(claims_bf16):
    model = tiny_lstm()
    model.eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    devices.training_precision("auto", CPU, model, batch())
    assert torch.equal(torch.rand(3), expected)
    assert not model.training and all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fp32_counting_models_and_explicit_choices():
    assert devices.training_precision("fp32", CPU, tiny_lstm(), batch()).name == "fp32"
    markov = build_model(model_config("markov", vocab_size=20, order=2))
    assert devices.training_precision("auto", CPU, markov, None).reason == "a counting model"
    with pytest.raises(TinyLMError, match="--precision must be"):
        devices.training_precision("fp16", CPU)
    with pytest.raises(TinyLMError, match="int8 runs on CPUs only"):
        devices.generation_candidates("int8", torch.device("cuda"))
    assert devices.generation_candidates("bf16", CPU) == ("bf16",)


@pytest.mark.skipif(not devices.native_bf16_cpu(), reason="this CPU has no native bf16: its side is tested above "
                                                          "with simulated kernels")
def test_the_native_bf16_side_runs_a_real_probe():
    choice = devices.training_precision("auto", CPU, tiny_lstm(), batch())
    assert choice.name in ("bf16", "fp32") and "probe" in choice.reason
    with choice.autocast(CPU):
        logits, _ = tiny_lstm()(batch()[0], None)
    assert logits.dtype == (torch.bfloat16 if choice.bf16 else torch.float32)


def test_threads_follow_physical_cores_and_refuse_nonsense(monkeypatch):
    monkeypatch.setattr(devices, "cpus_taken_by_others", lambda *args: 0.0)  # a quiet machine
    cores = devices.physical_cores()
    assert 1 <= cores <= (os.cpu_count() or 1)
    assert devices.default_threads() == cores and devices.default_threads(processes=cores * 4) == 1
    before = torch.get_num_threads()
    try:
        assert devices.apply_threads(1) == 1 and torch.get_num_threads() == 1
        assert devices.apply_threads(None) == cores
        for bad in (0, -2, 1.5, True):
            with pytest.raises(TinyLMError, match="--threads"):
                devices.apply_threads(bad)
    finally:
        torch.set_num_threads(before)
    assert devices.plural(1, "thread") == "1 thread" and devices.plural(2, "process") == "2 processes"


def test_threads_leave_the_cores_other_processes_keep_busy():
    assert devices.threads_beside(0.0, 2) == 2 and devices.threads_beside(0.4, 2) == 2  # a quiet machine: all
    assert devices.threads_beside(0.6, 2) == 1 and devices.threads_beside(1.0, 2) == 1  # one core taken
    assert devices.threads_beside(2.0, 2) == 1 and devices.threads_beside(7.0, 2) == 1  # never fewer than one
    assert devices.threads_beside(3.5, 16) == 12 and devices.threads_beside(1.0, 8, processes=2) == 3


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="the load is read from Linux's /proc/stat")
def test_a_busy_loop_beside_tinylm_is_measured_and_its_core_left_to_it(monkeypatch):
    monkeypatch.setattr(devices, "_LOAD", None)
    loop = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        import time

        time.sleep(0.5)  # the interpreter has started and spins
        taken = devices.cpus_taken_by_others(0.3)
        assert taken >= 0.6, taken  # one CPU kept busy (more when the machine has other work too)
        assert devices.cpus_taken_by_others() == taken  # measured once, then remembered for a minute
        cores = devices.physical_cores()
        assert devices.default_threads() == devices.threads_beside(taken, cores)
        if cores > 1:
            assert devices.default_threads() < cores
            assert "other processes keep" in devices.hardware_description(CPU)
            assert devices.hardware_summary(CPU)["cpus_taken_by_others"] == round(taken, 2)
    finally:
        loop.kill()
        loop.wait()


def test_hardware_summary_names_what_every_figure_depends_on():
    info = devices.hardware_summary(CPU, threads=3, processes=2)
    assert {"device", "threads", "processes", "cpu", "cpu_capability", "native_bf16"} <= info.keys()
    assert info["threads"] == 3 and info["processes"] == 2 and info["cpu"]
    assert "1 threads" not in devices.hardware_description(CPU)
    assert devices.process_age() is None or devices.process_age() >= 0


def test_an_avx2_only_cpu_is_recognised_without_native_bf16():
    """A process started as an AVX2-only CPU (ATen and oneDNN limited to AVX2) sees no native bf16."""
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    env.pop(devices.CPU_BF16_ENV, None)
    code = ("from tinylm import devices; import torch;"
            "print(devices.cpu_capability(), devices.native_bf16_cpu(),"
            " devices.training_precision('auto', torch.device('cpu')).name)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    capability, native, precision = out.split()
    assert capability == "avx2" and native == "False" and precision == "fp32"


def test_a_probed_choice_is_remembered_so_the_same_command_chooses_the_same(claims_bf16, monkeypatch):
    timings = iter([[1.0, 2.0], [2.0, 1.0]])  # the second measurement would say the opposite
    monkeypatch.setattr(devices, "_timed_steps",
                        lambda model, batch, device, precisions, repeats: next(timings)[:len(precisions)]
                        if repeats else [0.0])
    first = devices.training_precision("auto", CPU, tiny_lstm(), batch())
    again = devices.training_precision("auto", CPU, tiny_lstm(), batch())
    assert first.name == again.name == "bf16" and "remembered" in again.reason
    other_shape = devices.training_precision("auto", CPU, tiny_lstm(), (batch()[0][:2], batch()[1][:2]))
    assert other_shape.name == "fp32"  # another batch shape is measured anew


def test_a_resumed_run_keeps_its_precision_where_this_machine_runs_it(monkeypatch):
    assert devices.training_precision("auto", CPU, tiny_lstm(), batch(), previous="fp32").reason == \
        "as the run started"
    monkeypatch.setenv(devices.CPU_BF16_ENV, "1")
    assert devices.training_precision("auto", CPU, tiny_lstm(), batch(), previous="bf16").name == "bf16"
    monkeypatch.setenv(devices.CPU_BF16_ENV, "0")  # moved to a CPU without native bf16: the rules decide anew
    moved = devices.training_precision("auto", CPU, tiny_lstm(), batch(), previous="bf16")
    assert moved.name == "fp32" and "no native bf16" in moved.reason
