"""What this machine is and what tinylm chooses on it: `tinylm env` and `tinylm.environment()`, for bug reports
and for stating the hardware next to every figure. The choices themselves are tinylm/machine/devices.py's."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys

import torch

from .._version import __version__
from . import devices

EXTRAS = ("transformers", "huggingface_hub", "datasets", "accelerate", "wandb", "tensorboard", "gradio",
          "lightning", "nbclient", "gguf", "onnxruntime", "peft")
"""Optional packages, by distribution name, that some commands use."""

PROBE_FAMILIES = {"lstm": {"embed": 64, "hidden": 256, "layers": 2}, "gru": {"embed": 64, "hidden": 256},
                  "gpt": {"layers": 4, "heads": 4, "embed": 128}}
"""Small models of each trainable family that the report probes (what `auto` picks depends on the model)."""


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment_report(probe: bool = True) -> dict:
    """Versions, devices, the CPU, and what `--precision auto` picks for training and generation per family on
    the default device (with probe=False, without building models)."""
    device = devices.resolve_device("auto")
    report = {
        "tinylm": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
        "torch": torch.__version__,
        "devices": {"default": str(device), "cuda": torch.cuda.device_count() if torch.cuda.is_available() else 0,
                    "mps": devices.mps_available()},
        "cpu": {"model": devices.cpu_model(), "machine": platform.machine(), "capability": devices.cpu_capability(),
                "native_bf16": devices.native_bf16_cpu(), "bf16_kernels": devices.bf16_packing_supported(),
                "int8_matmul": devices.int8_kernel_available(), "physical_cores": devices.physical_cores(),
                "logical_cpus": os.cpu_count()},
        "threads": {"default": devices.default_threads(), "torch_now": torch.get_num_threads()},
        "load": {"cpus_taken_by_others": round(devices.cpus_taken_by_others(), 2),
                 "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None},
        "overrides": {name: value for name in (devices.CPU_BF16_ENV, "ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY",
                                                "OMP_NUM_THREADS")
                      if (value := os.environ.get(name)) is not None},
        "extras": {name: _version(name) for name in EXTRAS},
        "engines": {"torch": torch.__version__, "llama.cpp": _version("llama_cpp_python")},
    }
    if torch.cuda.is_available():
        report["devices"]["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    if probe:
        report["auto"] = _auto_choices(device)
    return report


def _auto_choices(device: torch.device) -> dict:
    from ..models import build_model, model_config
    from .fast_inference import resolve_precision

    vocab, batch, block = 65, 32, 64
    choices = {}
    generator = torch.Generator().manual_seed(0)
    for name, settings in PROBE_FAMILIES.items():
        model = build_model(model_config(name, vocab_size=vocab, block_size=block, dropout=0.0,
                                         **settings)).to(device)
        x = torch.randint(vocab, (batch, block), generator=generator).to(device)
        training = devices.training_precision("auto", device, model, (x, torch.roll(x, -1, 1)))
        choices[name] = {"training": training.name, "training_reason": training.reason,
                         "generation": resolve_precision(model, "auto", device)}
    choices["markov"] = {"training": "fp32", "training_reason": "a counting model", "generation": "fp32"}
    return choices


def load_line(load: dict, cores: int) -> str:
    """Whether other processes keep the machine busy, and what tinylm does about it."""
    taken, average = load["cpus_taken_by_others"], load["load_average_1min"]
    since = f"; load average {average:g}" if average is not None else ""
    if devices.is_busy(taken, cores):
        return (f"load            BUSY: other processes keep {taken:.1f} of {devices.plural(cores, 'core')} busy"
                f"{since}; tinylm uses the cores left free (--threads N sets it)")
    return f"load            quiet: other processes keep {taken:.1f} of {devices.plural(cores, 'core')} busy{since}"


def format_environment(report: dict) -> str:
    """The report as lines for people."""
    cpu, dev, threads = report["cpu"], report["devices"], report["threads"]
    gpus = ", ".join(dev.get("gpus", [])) or "none"
    lines = [
        f"tinylm          {report['tinylm']}",
        f"python          {report['python']} ({report['platform']})",
        f"torch           {report['torch']}",
        f"device (auto)   {dev['default']}; CUDA GPUs: {gpus}; Apple MPS: {'yes' if dev['mps'] else 'no'}",
        f"cpu             {cpu['model']} ({cpu['machine']}), {cpu['physical_cores']} physical cores, "
        f"{cpu['logical_cpus']} logical",
        f"cpu capability  {cpu['capability']}; native bf16: {'yes' if cpu['native_bf16'] else 'no'}; bf16 kernels: "
        f"{'yes' if cpu['bf16_kernels'] else 'no'}; int8 matmul: {'yes' if cpu['int8_matmul'] else 'no'}",
        f"threads         {threads['default']} by default (torch now: {threads['torch_now']})",
        load_line(report["load"], cpu["physical_cores"]),
    ]
    if report["overrides"]:
        lines.append("overrides       " + ", ".join(f"{k}={v}" for k, v in report["overrides"].items()))
    llama = report["engines"]["llama.cpp"]
    lines.append("engines         torch (fp32, bf16, int8); " + (
        f"llama.cpp {llama} (q8_0 GPT generation: a candidate of auto, measured and checked against fp32)" if llama
        else "llama.cpp not installed (faster GPT generation: pip install llama-cpp-python, ~20 minutes)"))
    for name, choice in report.get("auto", {}).items():
        lines.append(f"auto, {name:<9} training {choice['training']} ({choice['training_reason']}); "
                     f"generation {choice['generation']}")
    installed = [f"{k} {v}" for k, v in report["extras"].items() if v]
    missing = [k for k, v in report["extras"].items() if not v]
    lines.append("extras          " + (", ".join(installed) or "none"))
    if missing:
        lines.append("not installed   " + ", ".join(missing))
    return "\n".join(lines)


def environment(probe: bool = True) -> str:
    """`tinylm env` as text."""
    return format_environment(environment_report(probe))
