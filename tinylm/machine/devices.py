"""Where and how a model computes: the device, the precision and the threads.

This module is the one owner of those choices; training, evaluation, generation, fine-tuning, compare and
the playground ask it and decide nothing themselves.

    device = resolve_device("auto")                 # cuda, then mps, then cpu
    threads = apply_threads(None)                   # free physical cores (// processes), or what --threads says
    choice = training_precision("auto", device, model, batch)   # PrecisionChoice("fp32", "why ...")
    with choice.autocast(device): logits, state = model(x, state)

The rules, per device (`--precision auto`, the default):
- CUDA: bf16 autocast where the GPU supports bf16, else fp32.
- MPS (Apple GPUs): fp32, the precision tinylm is tested with there; `--precision bf16` is tried when asked.
- CPU: bf16 autocast only where the CPU computes bf16 natively (x86: AVX512-BF16 or AMX, with ATen running its
  AVX-512 kernels; Arm: the BF16 extension that oneDNN reports) AND a one-time probe of the actual model (a
  forward and backward pass of one batch under autocast) runs and is not slower than fp32. Elsewhere bf16 is
  emulated: it crashed oneDNN's LSTM and ran a GPT 3x slower on an AVX2-only AMD EPYC, so fp32.
  Every fallback says why in one line.
- An explicit `--precision bf16` that cannot run is a TinyLMError (one line, exit 2), never a traceback.

`TINYLM_CPU_BF16=0` makes this process treat the CPU as one without native bf16 (`1`: as one with it, the probe
still deciding); tests use it to run both sides of every choice on any machine. To make torch itself behave
like an AVX2-only CPU, start the process with `ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`.
"""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import TinyLMError
from . import llama_engine
from .store import TRAINING_CHOICES, model_fingerprint

CPU_BF16_ENV = "TINYLM_CPU_BF16"
TRAINING_PRECISIONS = ("auto", "bf16", "fp32")


# -- devices ----------------------------------------------------------------------------------------------------
def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def resolve_device(name: str | None = "auto") -> torch.device:
    """The torch device for --device NAME: auto picks CUDA, then MPS (Apple), then the CPU."""
    name = name or "auto"
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise TinyLMError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type not in ("cpu", "cuda", "mps"):
        raise TinyLMError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TinyLMError("--device cuda was asked for, but no CUDA GPU is available (use --device cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise TinyLMError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA GPUs")
    if device.type == "mps" and not mps_available():
        raise TinyLMError("--device mps was asked for, but this machine has no usable Apple GPU (use --device cpu)")
    return device


# -- the CPU ----------------------------------------------------------------------------------------------------
def cpu_model() -> str:
    """The processor's marketing name (e.g. "AMD EPYC 7B13"), for figures and bug reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model", "Hardware")) and ":" in line:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    if sys.platform == "darwin":
        import subprocess

        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                                 timeout=5)
            if out.stdout.strip():
                return out.stdout.strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_capability() -> str:
    """The instruction set ATen's CPU kernels run with: default, avx2, avx512, avx512_vnni... (honours
    ATEN_CPU_CAPABILITY)."""
    try:
        return str(torch.backends.cpu.get_cpu_capability()).lower()
    except (AttributeError, RuntimeError):
        return "unknown"


def _env_override(name: str) -> bool | None:
    """An environment switch: False (0, false, no, off), True (1, true, yes, on) or None (unset or empty); any
    other value is refused, so a typo never passes for the machine's own answer."""
    value = os.environ.get(name, "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    if value:
        raise TinyLMError(f"{name}={os.environ[name]!r}: set it to 0 (as a CPU without native bf16), 1 (with it) "
                          f"or leave it unset")
    return None


def check_environment() -> None:
    """Refuse a bad value of tinylm's environment switches (TINYLM_CPU_BF16) at the start of every command, not
    only in the commands that happen to ask what the CPU can do."""
    _env_override(CPU_BF16_ENV)


HARDWARE_LOG_ENV = "TINYLM_HARDWARE_LOG"


def _asked_the_hardware() -> None:
    """With TINYLM_HARDWARE_LOG=FILE, note who asked a question whose answer differs between CPUs (native bf16,
    bf16 kernels): the pytest test running (PYTEST_CURRENT_TEST, which subprocesses inherit) or the command. CI's
    first pass writes it; its second pass, on the other side (an AVX2-only CPU), reruns exactly those tests."""
    log = os.environ.get(HARDWARE_LOG_ENV)
    if log:
        asker = os.environ.get("PYTEST_CURRENT_TEST", " ".join(sys.argv)).rsplit(" (", 1)[0]
        with open(log, "a", encoding="utf-8") as f:
            f.write(asker + "\n")


def bf16_packing_supported() -> bool:
    """Whether oneDNN can run bf16 matrix products on this CPU at all (natively or emulated)."""
    if _env_override(CPU_BF16_ENV) is False:
        return False
    _asked_the_hardware()
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN, or without these ops
        return False


def native_bf16_cpu() -> bool:
    """Whether the CPU computes bf16 natively (x86: AVX512-BF16 or AMX, with ATen on its AVX-512 kernels; Arm: the
    BF16 extension). Without it oneDNN emulates bf16: slower, and some kernels (the LSTM's) fail to build."""
    forced = _env_override(CPU_BF16_ENV)
    if forced is not None:
        return forced
    _asked_the_hardware()
    if not bf16_packing_supported():
        return False
    if platform.machine().lower() in ("arm64", "aarch64"):
        return True  # oneDNN reports bf16 on Arm only where the CPU has the BF16 extension
    if not cpu_capability().startswith("avx512"):
        return False  # ATen was told (or found) no AVX-512: ATEN_CPU_CAPABILITY=avx2 simulates an AVX2 CPU
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def int8_kernel_available() -> bool:
    """Whether torch has the weight-only int8 kernel (`_weight_int8pack_mm`, a private op) on an x86-64 CPU,
    where it was measured. Elsewhere `--precision int8` still works when asked."""
    return hasattr(torch, "_weight_int8pack_mm") and platform.machine().lower() in ("x86_64", "amd64")


def _allowed_cpus() -> set[int] | None:
    try:
        return os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return None


def logical_cpus() -> int:
    """Logical CPUs (hyper-threads included) this process may run on: the most threads that can ever help."""
    allowed = _allowed_cpus()
    return len(allowed) if allowed else (os.cpu_count() or 1)


def physical_cores() -> int:
    """Physical cores this process may use (hyper-threads do not help these kernels)."""
    allowed = _allowed_cpus()
    logical = logical_cpus()
    try:  # Linux: count (package, core) pairs among the allowed CPUs
        cores, cpu, package = set(), None, "0"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "processor":
                cpu = int(value)
            elif key == "physical id":
                package = value
            elif key == "core id" and (allowed is None or cpu in allowed):
                cores.add((package, value))
        if cores:
            return max(1, min(len(cores), logical))
    except (OSError, ValueError):
        pass
    with contextlib.suppress(ImportError):
        import psutil  # where installed (macOS, Windows): its count of physical cores

        return max(1, min(psutil.cpu_count(logical=False) or logical, logical))
    return max(1, logical)


# -- threads ----------------------------------------------------------------------------------------------------
_CAPPED: set[int] = set()  # --threads values already said to be capped
LOAD_SAMPLE_SECONDS = 0.1  # 10 clock ticks a CPU: enough to tell a busy core from an idle one
_LOAD: tuple[float, float] | None = None  # (when, CPUs taken by others): one measurement serves a minute


def _cpu_ticks(cpus: set[int] | None) -> tuple[int, int] | None:
    """(busy, all) clock ticks of the CPUs `cpus` (None: all) since boot, from /proc/stat; None elsewhere."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    busy = total = 0
    for line in lines:
        name, *values = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit()) or (cpus is not None and int(name[3:]) not in cpus):
            continue
        ticks = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
        total += sum(ticks)
        busy += sum(ticks) - ticks[3] - ticks[4]
    return (busy, total) if total else None


def cpus_taken_by_others(seconds: float = LOAD_SAMPLE_SECONDS) -> float:
    """How many of the CPUs this process may use other processes keep busy, measured over `seconds` (this
    process's own work left out); 0.0 where the system does not say (not Linux)."""
    global _LOAD
    if _LOAD is not None and time.monotonic() - _LOAD[0] < 60:
        return _LOAD[1]
    cpus = _allowed_cpus()
    first, own, start = _cpu_ticks(cpus), time.process_time(), time.monotonic()
    time.sleep(seconds)
    last, own, elapsed = _cpu_ticks(cpus), time.process_time() - own, time.monotonic() - start
    if first is None or last is None or last[1] <= first[1]:
        return 0.0
    busy_share = (last[0] - first[0]) / (last[1] - first[1])
    taken = max(0.0, busy_share * logical_cpus() - own / elapsed)
    _LOAD = (time.monotonic(), taken)
    return taken


def threads_beside(taken: float, cores: int, processes: int = 1) -> int:
    """Threads per process on `cores` cores of which other processes keep `taken` busy: the cores left free,
    shared among the processes. A thread on a taken core waits for its turn while the others wait for it at
    every parallel step (BUSY_MACHINE in bench/README.md), so fewer threads go faster on a busy machine."""
    free = cores - int(taken + 0.5)  # a core counts as taken when others keep it at least half busy
    return max(1, free // max(1, processes))


def is_busy(taken: float, cores: int) -> bool:
    """Whether other processes keeping `taken` CPUs busy leave tinylm fewer than its `cores` threads."""
    return threads_beside(taken, cores) < cores


def default_threads(processes: int = 1) -> int:
    """Threads per process: the physical cores other processes leave free (measured at start-up), shared among
    the processes."""
    return threads_beside(cpus_taken_by_others(), physical_cores(), processes)


def check_processes(processes: int) -> None:
    """Refuse more training processes than this machine has CPUs (or GPUs): each needs one to run on."""
    limit = max(logical_cpus(), torch.cuda.device_count() if torch.cuda.is_available() else 0)
    if processes > limit:
        raise TinyLMError(f"--processes {processes} is more than this machine can run at once ({plural(limit, 'CPU')}"
                          f"{' or GPU' if torch.cuda.is_available() else ''}); use at most {limit}")


def apply_threads(threads: int | None = None, processes: int = 1) -> int:
    """Set torch's intra-op threads (--threads, else the default) and return the number set."""
    if threads is None:
        threads = default_threads(processes)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise TinyLMError(f"--threads must be a whole number >= 1, got {threads!r}")
    if threads > logical_cpus():
        # More threads than CPUs only wait for each other (10,000 took minutes per step; a million exhausted the
        # process table): said once per value asked for.
        if threads not in _CAPPED:
            _CAPPED.add(threads)
            print(f"note: --threads {threads} is more than the {plural(logical_cpus(), 'CPU')} this process may "
                  f"use; using {logical_cpus()}", file=sys.stderr)
        threads = logical_cpus()
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads


def plural(count: int, word: str) -> str:
    """ "1 thread", "2 threads". """
    return f"{count} {word}" if count == 1 else f"{count} {word}{'es' if word.endswith('s') else 's'}"


# -- precision for training -------------------------------------------------------------------------------------
@dataclass
class PrecisionChoice:
    """What computes in training: "bf16" (autocast) or "fp32", and why (one line for people)."""

    name: str
    reason: str

    @property
    def bf16(self) -> bool:
        return self.name == "bf16"

    def autocast(self, device: torch.device):
        """The context the forward pass runs in."""
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def describe(self) -> str:
        return ("bf16 autocast" if self.bf16 else "fp32") + f" ({self.reason})"


def check_training_precision(precision: str) -> None:
    if precision not in TRAINING_PRECISIONS:
        raise TinyLMError(f"--precision must be auto, bf16 or fp32, got {precision!r}")


def training_precision(requested: str, device: torch.device, model: torch.nn.Module | None = None,
                       batch: tuple[torch.Tensor, torch.Tensor] | None = None,
                       previous: str | None = None) -> PrecisionChoice:
    """Decide the training precision for `model` on `device` (see the module's docstring for the rules).
    `batch` (inputs, targets) is what the CPU probe runs; without a model and batch the probe is skipped.
    `previous`: what a resumed run computed in so far; auto keeps it where this machine runs it natively, so
    that a resume is exact."""
    check_training_precision(requested)
    if requested == "fp32":
        return PrecisionChoice("fp32", "--precision fp32")
    if requested == "auto" and previous == "fp32":
        return PrecisionChoice("fp32", "as the run started")
    if requested == "auto" and previous == "bf16" and (
            (device.type == "cuda" and torch.cuda.is_bf16_supported())
            or (device.type == "cpu" and native_bf16_cpu())):
        return PrecisionChoice("bf16", "as the run started")
    if model is not None and not any(p.requires_grad for p in model.parameters()):
        if requested == "bf16":
            raise TinyLMError("--precision bf16: this model counts, it has no weights to compute in bf16")
        return PrecisionChoice("fp32", "a counting model")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return PrecisionChoice("bf16", "this GPU supports bf16")
        if requested == "bf16":
            raise TinyLMError(f"--precision bf16: {torch.cuda.get_device_name(device)} has no bf16; use fp32")
        return PrecisionChoice("fp32", "this GPU has no bf16")
    if device.type == "mps":
        if requested == "auto":
            return PrecisionChoice("fp32", "Apple GPU: fp32, the precision tested there")
        _probe_or_fail(model, batch, device)
        return PrecisionChoice("bf16", "--precision bf16")
    # the CPU
    if requested == "bf16":
        if not bf16_packing_supported():
            raise TinyLMError("--precision bf16: this CPU's PyTorch build cannot compute in bf16; use fp32")
        _probe_or_fail(model, batch, device)
        native = "native" if native_bf16_cpu() else "emulated, slower than fp32 here"
        return PrecisionChoice("bf16", f"--precision bf16, {native}")
    if not native_bf16_cpu():
        forced = " (TINYLM_CPU_BF16=0)" if _env_override(CPU_BF16_ENV) is False else ""
        return PrecisionChoice("fp32", f"no native bf16 on this CPU{forced}, capability {cpu_capability()}")
    if model is None or batch is None:
        return PrecisionChoice("bf16", "native bf16 on this CPU")
    return _probe(model, batch, device)


def _step(model: torch.nn.Module, batch, device: torch.device, bf16: bool) -> float:
    """One forward and backward pass; returns its seconds. Gradients are cleared after."""
    import torch.nn.functional as F

    x, y = batch
    t0 = time.perf_counter()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        logits, _ = model(x, None)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), ignore_index=-100)
    loss.backward()
    seconds = time.perf_counter() - t0
    model.zero_grad(set_to_none=True)
    return seconds


def _probe_or_fail(model, batch, device) -> None:
    if model is None or batch is None:
        return
    try:
        _timed_steps(model, batch, device, (True,), repeats=0)
    except RuntimeError as e:
        raise TinyLMError(f"--precision bf16 cannot run this model here ({_first_line(e)}); use --precision fp32 "
                          f"or auto") from None


def _timed_steps(model, batch, device, precisions: tuple[bool, ...], repeats: int) -> list[float]:
    """For each precision (True: bf16), the best of `repeats` timed steps after one warm-up step; the precisions
    take turns, so that a burst of load elsewhere on the machine does not fall on one side only. The model's
    training mode and the RNG are left as they were; gradients are cleared."""
    rng = torch.get_rng_state()
    was_training = model.training
    model.train()
    try:
        for bf16 in precisions:
            _step(model, batch, device, bf16)  # warm-up: kernel selection, allocations
        best = [float("inf")] * len(precisions)
        for _ in range(repeats):
            for i, bf16 in enumerate(precisions):
                best[i] = min(best[i], _step(model, batch, device, bf16))
        return best
    finally:
        model.train(was_training)
        torch.set_rng_state(rng)


PROBE_MARGIN = 1.05
"""bf16 must be at least this much faster than fp32 in the probe to be chosen (timing noise of a few steps)."""


def _probe(model: torch.nn.Module, batch, device: torch.device) -> PrecisionChoice:
    """Native bf16 CPU: keep bf16 only if a forward+backward of one batch runs under autocast and is faster.
    Measured once per machine, model shape and batch shape, then remembered (store.TRAINING_CHOICES): the same
    command makes the same choice every time, as exact resumes and repeated runs need."""
    key = f"{machine_key()} | {model_fingerprint(model)} | batch {tuple(batch[0].shape)}"
    entry, remembered = TRAINING_CHOICES.recall_or_measure(
        key, lambda: _as_entry(_measure(model, batch, device)),
        usable=lambda entry: entry.get("precision") in ("bf16", "fp32") and isinstance(entry.get("reason"), str))
    choice = PrecisionChoice(entry["precision"], entry["reason"])
    if remembered:
        choice.reason += "; remembered from an earlier probe"
    return choice


def machine_key() -> str:
    """What a measured choice depends on besides the model: the CPU, its instruction set, torch, the threads."""
    return f"{cpu_model()} | {cpu_capability()} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def _as_entry(choice: PrecisionChoice) -> dict:
    return {"precision": choice.name, "reason": choice.reason}


def _measure(model: torch.nn.Module, batch, device: torch.device) -> PrecisionChoice:
    try:
        _timed_steps(model, batch, device, (True,), repeats=0)
    except RuntimeError as e:
        return PrecisionChoice("fp32", f"bf16 autocast failed for this model on this CPU: {_first_line(e)}")
    bf16_seconds, fp32_seconds = _timed_steps(model, batch, device, (True, False), repeats=3)
    ratio = fp32_seconds / max(bf16_seconds, 1e-9)
    if ratio < PROBE_MARGIN:
        return PrecisionChoice("fp32", f"bf16 autocast was not faster in a probe step ({ratio:.3f}x fp32's speed, "
                                       f"{PROBE_MARGIN}x needed)")
    return PrecisionChoice("bf16", f"native bf16, {ratio:.1f}x fp32's speed in a probe step")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:160]


# -- precision for generation -----------------------------------------------------------------------------------
GENERATION_PRECISIONS = ("auto", "fp32", "bf16", "int8", "llama.cpp")


def check_generation_precision(requested: str, device: torch.device | str) -> None:
    """Refuse a generation precision that is not one, or that `device` never runs (int8 off a CPU). It asks the CPU
    nothing: what auto picks is decided when generating, and only for a model large enough to measure."""
    if requested not in GENERATION_PRECISIONS:
        raise TinyLMError(f"--precision must be one of {', '.join(GENERATION_PRECISIONS)}, got {requested!r}")
    if requested in ("int8", "llama.cpp") and torch.device(device).type != "cpu":
        raise TinyLMError(f"--precision {requested} runs on CPUs only (this model is on {device}); use bf16 or "
                          "fp32")
    if requested == "llama.cpp" and not llama_engine.available():
        raise TinyLMError("--precision llama.cpp needs llama.cpp and the gguf package: pip install "
                          "llama-cpp-python 'tinylm[gguf]' (llama-cpp-python compiles llama.cpp, ~20 minutes)")


def generation_candidates(requested: str, device: torch.device | str) -> tuple[str, ...]:
    """The generation precisions allowed for `requested` on `device`, in order of preference before measuring:
    one entry for an explicit choice (checked here), several for auto on a CPU (the fastest that agrees with
    fp32 is measured and kept by tinylm.machine.fast_inference)."""
    check_generation_precision(requested, device)
    kind = torch.device(device).type
    if requested != "auto":
        return (requested,)
    if kind == "cuda":
        return ("bf16",) if torch.cuda.is_bf16_supported() else ("fp32",)
    if kind != "cpu":
        return ("fp32",)
    candidates = ["fp32"]
    if int8_kernel_available():
        # int8 weights, bf16 activations converted in ATen's own vector code (AVX2 too: on an AVX2-only EPYC it
        # was the fastest at 1 thread), so it stays a candidate without native bf16; measured and checked there
        candidates.append("int8")
    if bf16_packing_supported():
        candidates.append("bf16")
    if llama_engine.available():  # GPTs only: fast_inference drops it for other models
        candidates.append("llama.cpp")
    return tuple(candidates)


# -- what a run records -----------------------------------------------------------------------------------------
def hardware_summary(device: torch.device, threads: int | None = None, processes: int = 1) -> dict:
    """What every figure of a run is traceable to: written into summary.json."""
    info = {"device": str(device), "processes": processes,
            "threads": threads if threads is not None else torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    info.update(cpu=cpu_model(), cpu_capability=cpu_capability(), native_bf16=native_bf16_cpu(),
                physical_cores=physical_cores())
    if _LOAD is not None:  # the default thread count was measured against the load
        info["cpus_taken_by_others"] = round(_LOAD[1], 2)
    return info


def hardware_description(device: torch.device) -> str:
    """One line: the GPU's name, or the CPU with its cores and threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple GPU (MPS), {cpu_model()}"
    busy = f" (other processes keep {_LOAD[1]:.1f} busy)" if _LOAD and is_busy(_LOAD[1], physical_cores()) else ""
    return (f"{cpu_model()}, {plural(physical_cores(), 'core')}{busy}, {plural(torch.get_num_threads(), 'thread')}, "
            f"capability {cpu_capability()}")


# -- the machine a run trains on, settled once ---------------------------------------------------------------
@dataclass
class MachineChoice:
    """Where and how a run computes, decided once before its first step: the device, the precision (with its
    reason), the threads and the processes. Every engine's startup line and summary.json read it from here."""

    device: torch.device
    precision: PrecisionChoice
    threads: int
    processes: int = 1

    def facts(self) -> dict:
        """What summary.json and the loggers record about the machine."""
        return {**hardware_summary(self.device, self.threads, self.processes), "precision": self.precision.name,
                "precision_reason": self.precision.reason, "hardware": hardware_description(self.device)}

    def describe(self, trainable: bool = True) -> str:
        """The startup line's text: "cpu: fp32 (...); AMD EPYC ..., 2 cores, 2 threads, capability avx512"."""
        shown = ([self.precision.describe()] if trainable else []) + [hardware_description(self.device)]
        if self.processes > 1:
            shown.append(f"{plural(self.processes, 'process')} (DDP)")
        return f"{self.device}: {'; '.join(shown)}"


def settle_machine(device: torch.device, precision: str, threads: int | None, model: torch.nn.Module,
                   probe_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]] | None, *,
                   previous: str | None = None, processes: int = 1) -> MachineChoice:
    """Apply --threads (else keep what the process has: the CLI's default, torchrun's OMP_NUM_THREADS, or an API
    caller's own torch.set_num_threads()), then decide the precision for `model` (`probe_batch()` gives the batch
    the CPU probe runs; `previous`: what a resumed run computed in)."""
    threads = apply_threads(threads) if threads else torch.get_num_threads()
    trainable = any(p.requires_grad for p in model.parameters())
    batch = probe_batch() if trainable and probe_batch is not None else None
    return MachineChoice(device, training_precision(precision, device, model, batch, previous), threads, processes)


_IMPORTED_AT = time.time()


def process_age() -> float | None:
    """Seconds since this process started: from /proc on Linux, psutil where installed, else since tinylm was
    imported (a little less than the process's age)."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return round(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    with contextlib.suppress(ImportError, OSError):
        import psutil

        return round(time.time() - psutil.Process().create_time(), 2)
    return round(time.time() - _IMPORTED_AT, 2)
