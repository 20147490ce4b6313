"""A fast path for generation: an inference-only copy of any model whose Linear layers compute in bf16 (or
with int8 weights), and `--precision auto`, which measures on this machine which precision generates fastest.

At batch 1 a model reads every weight once per token and does little arithmetic with it, so on a CPU the
time goes into streaming the weights from memory (and, for small models, into the fixed cost of each call):
the gpt-gpu preset's 42 MB of fp32 weights are fetched again for every token. Stored in bf16 and reordered
once into oneDNN's blocked layout, the same Linear layers take half the bytes and a kernel that skips the
per-call weight reorder; with int8 weights (one scale per output) a quarter of the bytes.

    fast = inference_copy(model, "bf16")       # a copy; `model` is untouched and keeps training
    logits, state = fast(ids, state)           # the same contract; activations stay fp32 between layers

Only `nn.Linear` layers are swapped, so this works for every family without knowing its layout: the layer
norms, attention, recurrent cells and embeddings stay fp32, and each Linear rounds its input (and output) to
bf16 only around its product. Precisions:
- "fp32": the model itself, exact;
- "bf16": `PackedLinear` (oneDNN, bf16 weights reordered once), or `BF16Linear` (plain F.linear on bf16
  weights) where oneDNN cannot pack bf16. Logits within ~1% of the largest logit (bf16 keeps 8 significant
  bits);
- "int8": `Int8Linear`, weight-only int8 (torch's `_weight_int8pack_mm`, bf16 activations), CPU only, the
  least exact (logits within ~2%); a layer the kernel cannot take stays bf16;
- "auto" (the default of sampling): the fastest of the candidates tinylm.machine.devices allows here (on a CPU: fp32,
  int8 where torch has the kernel, bf16 where oneDNN can pack it) that runs and agrees with fp32. Which one
  that is depends on the CPU (native bf16 or not, caches, memory bandwidth) and on the model, so it is
  measured, not guessed: the first time a CPU, a thread count and a model shape meet, each candidate decodes
  a few tokens (`auto_ranking`, under a second for the presets' models), and the ranking is kept in
  `generation_precision.json` in the cache folder (TINYLM_CACHE_DIR, default ~/.cache/tinylm), so later runs
  read it. Models under AUTO_MEASURE_MIN_LINEAR_WEIGHTS stay fp32 unmeasured. Each copy that auto uses is
  checked once against fp32 on a probe sequence (`agrees_with_fp32`); a candidate whose kernel fails or
  disagrees is skipped with one warning line, never a traceback.
The copy is for inference only: it refuses `train()`, its weights do not require gradients, and it cannot
be saved or copied again (oneDNN's packed tensors have no storage).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TinyLMError
from . import devices
from .store import GENERATION_CHOICES, model_fingerprint

PRECISIONS = devices.GENERATION_PRECISIONS

AUTO_MEASURE_MIN_LINEAR_WEIGHTS = 250_000
"""Below this many Linear weights `auto` keeps fp32 without measuring: the weights stay in the CPU's caches
and a lower precision only adds its fixed cost per call (int8 measured 0.78x fp32's tokens/s at 0.4M Linear
weights, bf16 0.67x at 0.8M, on a 2-core AMD EPYC); it also keeps small models exact and quick to start."""

AUTO_MARGIN = 1.10
"""A lower precision must decode at least this much faster than fp32 in the measurement to be chosen: within
timing noise, the exact one wins."""

MEASURE_TOKENS = 16
"""Tokens each candidate decodes in one timed pass of the measurement."""

MEASURE_ROUNDS = 5
"""Timed passes per candidate, taking turns; the fastest counts (under a second in all for gpt-gpu's model)."""

TOLERANCES = {"bf16": 2e-2, "int8": 4e-2, "llama.cpp": 4e-2}  # llama.cpp: q8_0 weights (tinylm.machine.llama_engine)
"""Max |logit difference| against fp32, as a share of the largest |fp32 logit|, that a copy may show to be
used by auto, and that the tests allow (measured on small random models: bf16 up to ~1.2%, int8 up to ~1.6%)."""

INT8_BLOCK = 16
"""Int8Linear needs in_features to be a multiple of this: torch's AVX512 int8 kernel reads the inputs 16 at
a time and crashes on a remainder (torch 2.13); such layers stay bf16."""

KERNEL_ERRORS = (RuntimeError, AttributeError, TypeError)
"""What a kernel that cannot run here raises (oneDNN and ATen errors, a private op missing from this build)."""


def linear_weights(model: nn.Module) -> int:
    """Number of weights in the model's nn.Linear layers (what the fast path converts)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))


def resolve_precision(model: nn.Module, precision: str, device: torch.device | str = "cpu") -> str:
    """"fp32", "bf16" or "int8": what `precision` means for this model on this device. The candidates come from
    tinylm.machine.devices (the policy's owner); for auto on a CPU the fastest that works here is measured once
    (`auto_ranking`)."""
    if _small_on_cpu(model, precision, device):
        return "fp32"
    candidates = candidates_for(model, precision, device)
    if len(candidates) == 1:
        return candidates[0]
    return auto_ranking(model, candidates)[0]


def candidates_for(model: nn.Module, precision: str, device: torch.device | str) -> tuple[str, ...]:
    """devices.generation_candidates for this model: llama.cpp runs GPTs built like GPT-2 only (an explicit
    request for another model is a TinyLMError; auto leaves it out)."""
    from . import llama_engine

    candidates = devices.generation_candidates(precision, device)
    if "llama.cpp" not in candidates or llama_engine.runs_model(model):
        return candidates
    if precision == "llama.cpp":
        raise TinyLMError("--precision llama.cpp runs GPTs built like GPT-2 whose width is a multiple of 32; "
                          f"this model is {model.describe() if hasattr(model, 'describe') else type(model).__name__}")
    return tuple(c for c in candidates if c != "llama.cpp")


def _small_on_cpu(model: nn.Module, precision: str, device: torch.device | str) -> bool:
    """auto on a CPU for a model too small to gain from another precision: fp32, decided without a measurement
    or a question to the CPU (see auto_ranking)."""
    return precision == "auto" and torch.device(device).type == "cpu" \
        and linear_weights(model) < AUTO_MEASURE_MIN_LINEAR_WEIGHTS


def warn(message: str) -> None:
    """One line on stderr, like tinylm's other notes (a warning never lands inside a streamed text: sample
    writes its first piece after the runner is chosen)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


class _InferenceOnly(nn.Module):
    """A layer that only runs forward passes: `train()` is refused, so an inference copy never trains.
    The CPU layers keep their tensors as plain attributes, not buffers: at batch 1 they are read on every
    call, and nn.Module's lookup of a buffer (~0.5 us) costs as much as a small kernel; the copy is never
    moved, saved or copied again, so nothing needs them registered."""

    in_features: int
    out_features: int

    def train(self, mode: bool = True) -> _InferenceOnly:
        if mode:
            raise TinyLMError("this is an inference copy of a model (tinylm.machine.fast_inference): train the "
                              "original")
        return super().train(False)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"

    # Generation's step (a GPT's _decode_step) calls these two where it can: at batch 1 every operation saved
    # counts (a cast, a bias add or an allocation is 1-2 us against ~40 us for a whole product).
    def forward_hidden(self, x: torch.Tensor) -> torch.Tensor:
        """self(x) for a hidden layer: the output stays in the precision the product ran in (bf16), so the
        activation runs on it and the next layer takes it without a cast (it would round it to bf16 anyway)."""
        return self(x)

    def add_into(self, residual: torch.Tensor, x: torch.Tensor) -> None:
        """residual += self(x), in place, the product's output added to the fp32 residual as it is."""
        residual.add_(self.forward_hidden(x))


def _back(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return y.float() if like.dtype == torch.float32 else y.to(like.dtype)  # .float(): the cheaper call


class PackedLinear(_InferenceOnly):
    """nn.Linear with its weight in bf16, reordered once into oneDNN's blocked layout (no per-call reorder).
    Input and output keep their dtype; only the product is computed in bf16 (accumulated in fp32), and the
    bias stays fp32 (oneDNN adds it before rounding the output, at no extra cost)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # an opaque oneDNN tensor (state_dict() must never meet it)
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach().to(torch.bfloat16))
        self.bias = None if linear.bias is None else linear.bias.detach().float().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _back(self.forward_hidden(x), x)

    def forward_hidden(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x.bfloat16(), self.packed, self.bias, "none", [], "")


class BF16Linear(_InferenceOnly):
    """The fallback where oneDNN cannot pack bf16 (no oneDNN, other devices): the same bf16 numerics through
    F.linear with a bf16 weight. Half the bytes to read, but not the packed kernel's speed."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", linear.weight.detach().to(torch.bfloat16).clone(), persistent=False)
        bias = None if linear.bias is None else linear.bias.detach().to(torch.bfloat16).clone()
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_hidden(x).to(x.dtype)

    def forward_hidden(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(torch.bfloat16), self.weight, self.bias)


class Int8Linear(_InferenceOnly):
    """nn.Linear with weight-only int8: each output row w is stored as round(w / s) in [-127, 127] with one
    scale s = max|w| / 127 (in bf16, as the kernel wants), and multiplied by bf16 inputs in torch's
    `_weight_int8pack_mm` (a quarter of fp32's bytes, and a small fixed cost per call). The bias stays fp32."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        w = linear.weight.detach().float()
        scale = (w.abs().amax(dim=1) / 127).clamp_min(torch.finfo(torch.bfloat16).tiny).to(torch.bfloat16)
        # quantised against the bf16 scale the kernel will use, so that q * scale is as close to w as it gets
        q = torch.round(w / scale.float()[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
        self.weight, self.scale = q, scale
        self.bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self.bias_bf16 = None if self.bias is None else self.bias.bfloat16()  # for forward_hidden

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or not x.size(0):  # the prompt (B, T, in): rows; generation's step is (B, in) already
            return self._rows(x)
        y = torch._weight_int8pack_mm(x.bfloat16().contiguous(), self.weight, self.scale)
        bias = self.bias
        if bias is None:
            return _back(y, x)
        if x.dtype == torch.float32:
            return torch.add(bias, y)  # bf16 + fp32 -> fp32: the cast and the bias in one call (~3% a token)
        return y.to(x.dtype).add_(bias)

    def forward_hidden(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or not x.size(0):
            return self(x)
        y = torch._weight_int8pack_mm(x.bfloat16().contiguous(), self.weight, self.scale)
        return y if self.bias_bf16 is None else y.add_(self.bias_bf16)  # the bias rounded once more: bf16

    def add_into(self, residual: torch.Tensor, x: torch.Tensor) -> None:
        if x.dim() != 2 or not x.size(0):
            residual.add_(self(x))
            return
        residual.add_(torch._weight_int8pack_mm(x.bfloat16().contiguous(), self.weight, self.scale))
        if self.bias is not None:
            residual.add_(self.bias)  # fp32 += bf16, then += fp32: no temporary, no cast

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        if not x.numel():
            return x.new_zeros(*x.shape[:-1], self.out_features)
        return self(x.reshape(-1, self.in_features)).view(*x.shape[:-1], self.out_features)


def _fast_linear(linear: nn.Linear, precision: str) -> nn.Module:
    on_cpu = linear.weight.device.type == "cpu"
    if precision == "int8" and on_cpu and linear.in_features % INT8_BLOCK == 0:
        return Int8Linear(linear)
    return PackedLinear(linear) if on_cpu and devices.bf16_packing_supported() else BF16Linear(linear)


def inference_copy(model: nn.Module, precision: str = "bf16") -> nn.Module:
    """An inference-only copy of `model` in eval mode, its nn.Linear layers computing in `precision`
    ("bf16" or "int8"; "fp32" gives a plain frozen copy). The original is not modified. Generic: the copy
    follows the same `logits, state = model(ids, state)` contract whatever the family."""
    if precision not in ("fp32", "bf16", "int8", "llama.cpp"):
        raise TinyLMError(f"inference_copy takes fp32, bf16, int8 or llama.cpp, got {precision!r} (resolve 'auto' "
                          "first)")
    if precision == "llama.cpp":
        from .llama_engine import LlamaCppGPT

        return LlamaCppGPT(model)
    # Each Linear is converted from the original and handed to deepcopy as its copy (the memo), so that the
    # fp32 weights of the Linear layers are never copied: no moment with two fp32 models in memory.
    memo: dict[int, Any] = {}
    if precision != "fp32":
        for linear in model.modules():
            if type(linear) is nn.Linear:  # subclasses may do more in forward: they stay as they are
                memo[id(linear)] = _fast_linear(linear, precision).eval()
    fast = copy.deepcopy(model, memo).eval()
    fast.requires_grad_(False)
    fast.inference_precision = precision
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    fast.kv_cache_dtype = kv_cache_dtype(precision, device)
    return fast


def kv_cache_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The dtype of a bf16 / int8 copy's KV cache on `device` (None: the model's own, fp32): on a CPU, bf16 where
    it computes bf16 natively (attention reads half the bytes) and fp32 elsewhere, where attention's bf16
    products are emulated (3x slower in the decode step as an AVX2-only CPU: bench/README.md); elsewhere the
    model's own."""
    if precision == "fp32" or device.type != "cpu":
        return None
    return torch.bfloat16 if devices.native_bf16_cpu() else None


# -- copies, made once per model and precision ---------------------------------------------------------------
@dataclasses.dataclass
class _Copy:
    signature: tuple
    """The model's weights when the copy was made (see _signature)."""
    module: nn.Module
    agrees: bool | None = None
    """Whether its logits agree with fp32's on the probe (None: not checked yet)."""


# model -> {precision: _Copy}: rebuilt when the model's weights change (e.g. between two epochs of training)
_COPIES: weakref.WeakKeyDictionary[nn.Module, dict[str, _Copy]] = weakref.WeakKeyDictionary()


def _signature(model: nn.Module) -> tuple:
    """Changes when any weight is replaced or modified in place (an optimizer step, load_state_dict, .to())."""
    return tuple((t.data_ptr(), _version(t)) for t in (*model.parameters(), *model.buffers()))


def _version(t: torch.Tensor) -> int | None:
    try:
        return t._version
    except RuntimeError:  # a tensor made under inference_mode keeps no version counter
        return None


def _copy(model: nn.Module, precision: str) -> _Copy:
    """The model's inference copy in `precision`, made (and run once on the probe) unless a current one exists.
    Raises what the kernel raises when it cannot run here."""
    copies = _COPIES.setdefault(model, {})
    signature = _signature(model)
    cached = copies.pop(precision, None)  # a stale copy goes before the new one is built: less memory at once
    if cached is None or cached.signature != signature:
        cached = _Copy(signature, inference_copy(model, precision))
        _probe_logits(cached.module, model)  # a kernel that cannot run here fails now, not mid-text
    copies[precision] = cached
    return cached


def _agrees(model: nn.Module, precision: str, made: _Copy) -> bool:
    if made.agrees is None:
        made.agrees = agrees_with_fp32(model, made.module, TOLERANCES[precision])
    return made.agrees


def model_for_generation(model: nn.Module, precision: str = "auto", device: torch.device | str = "cpu") -> nn.Module:
    """The module to generate with: `model` itself for fp32 (or when it is an inference copy already), else its
    inference copy in that precision, made once and rebuilt when the model's weights have changed since.
    auto: the first of `auto_ranking` that runs and agrees with fp32 here (a warning line for each one that
    does not); an explicit bf16 or int8 that cannot run here is a TinyLMError."""
    if hasattr(model, "inference_precision") or _small_on_cpu(model, precision, device):
        return model
    candidates = candidates_for(model, precision, device)
    if len(candidates) == 1:
        if candidates[0] == "fp32":
            return model
        try:
            return _copy(model, candidates[0]).module
        except KERNEL_ERRORS as e:
            raise TinyLMError(f"--precision {candidates[0]} cannot run this model here ({_first_line(e)}); use "
                              "--precision fp32 or auto") from None
    for chosen in auto_ranking(model, candidates):
        if chosen == "fp32":
            return model
        try:
            made = _copy(model, chosen)
        except KERNEL_ERRORS as e:
            warn(f"{chosen} generation fails on this machine ({_first_line(e)}); trying the next precision")
            continue
        if _agrees(model, chosen, made):
            return made.module
        warn(f"{chosen} generation disagrees with fp32 for this model on this machine; trying the next precision "
             "(choose with --precision)")
    return model


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:160]


# -- running a model the way generation does ---------------------------------------------------------------
def grad_mode(runner: nn.Module):
    """The autograd mode generation runs `runner` under. An inference copy runs under inference_mode: its
    oneDNN kernels have no autograd formula, and under no_grad every call still goes through autograd's
    fallback (10-30% of the time per token, measured). A trainable model keeps no_grad, so that nothing it
    creates while sampling is an inference tensor."""
    return torch.inference_mode() if hasattr(runner, "inference_precision") else torch.no_grad()


@contextlib.contextmanager
def sampling_flags(model: nn.Module, device: torch.device | str = "cpu"):
    """Eval mode, and oneDNN off on a CPU for the families that sample faster without it (at batch 1 its
    recurrent kernels cost more than they save: a small LSTM samples ~6x faster without them; training keeps
    them). Both restored after."""
    was_training, onednn = model.training, torch.backends.mkldnn.enabled
    model.eval()
    if torch.device(device).type == "cpu" and getattr(model, "sample_without_onednn", False):
        torch.backends.mkldnn.set_flags(False)
    try:
        yield
    finally:
        model.train(was_training)
        torch.backends.mkldnn.set_flags(onednn)


def _probe_ids(model: nn.Module, tokens: int) -> torch.Tensor:
    """A fixed sequence of token ids (1, tokens) on the model's device."""
    vocab = getattr(getattr(model, "config", None), "vocab_size", 0) or 1
    device = next(model.parameters()).device
    return (torch.arange(tokens, device=device) * 7 % vocab).view(1, -1)


def _probe_logits(runner: nn.Module, model: nn.Module, tokens: int = 16) -> torch.Tensor:
    """The logits (1, tokens, V) of the probe sequence fed the way generation feeds a text: the first half as
    the prompt, then one token at a time with the carried state (so the step kernels are what is checked)."""
    ids = _probe_ids(model, tokens)
    prompt = max(1, tokens // 2)
    with sampling_flags(runner, ids.device), torch.inference_mode():
        logits, state = runner(ids[:, :prompt], None)
        out = [logits.float()]
        for i in range(prompt, tokens):
            logits, state = runner(ids[:, i : i + 1], state)
            out.append(logits.float())
    return torch.cat(out, dim=1)


def agrees_with_fp32(model: nn.Module, fast: nn.Module, tolerance: float, probe_tokens: int = 16) -> bool:
    """Whether `fast` gives `model`'s logits within `tolerance` x the largest |logit| on a fixed probe sequence
    (a check that a kernel does what it should on this machine, not a measure of quality)."""
    if not getattr(getattr(model, "config", None), "vocab_size", 0):
        return True  # nothing to probe with
    expected = _probe_logits(model, model, probe_tokens)
    got = _probe_logits(fast, model, probe_tokens)
    return bool((got - expected).abs().max() <= tolerance * expected.abs().max().clamp_min(1e-6))


def decode_rates(runners: dict[str, nn.Module], model: nn.Module, tokens: int = MEASURE_TOKENS,
                 rounds: int = MEASURE_ROUNDS) -> dict[str, float]:
    """New tokens per second of greedy decoding for each runner (name -> module) from a short prompt, run as
    generation runs it: the best of `rounds` timed passes after a warm-up one (kernel selection, allocations),
    the runners taking turns, so that a busy moment of a shared machine slows them all rather than one."""
    prompt = _probe_ids(model, 4)
    best = dict.fromkeys(runners, math.inf)
    for round_ in range(rounds + 1):
        for name, runner in runners.items():
            seconds = _decode_seconds(runner, prompt, tokens if round_ else 2)
            if round_:
                best[name] = min(best[name], seconds)
    return {name: tokens / seconds for name, seconds in best.items()}


def _decode_seconds(runner: nn.Module, prompt: torch.Tensor, tokens: int) -> float:
    with sampling_flags(runner, prompt.device), grad_mode(runner):
        logits, state = runner(prompt, None)
        start = time.perf_counter()
        for _ in range(tokens):
            token = logits[:, -1].argmax(-1)
            int(token.item())  # generation reads each token back too
            logits, state = runner(token.view(1, 1), state)
        return time.perf_counter() - start


# -- auto: measured once per CPU, threads and model shape ------------------------------------------------------
_RANKINGS: dict[tuple[str, str], list[str]] = {}
"""This process's rankings by (choices file, choice key): the file is read once per key."""


def auto_ranking(model: nn.Module, candidates: tuple[str, ...]) -> list[str]:
    """The candidates that run and agree with fp32 here, the one to use first: the fastest, where it beats
    fp32 by AUTO_MARGIN (else fp32), then the others by speed. Measured the first time this CPU, capability,
    torch version, thread count and model shape meet (a warning line for each candidate that fails or
    disagrees), then read from the cache folder (store.GENERATION_CHOICES)."""
    if linear_weights(model) < AUTO_MEASURE_MIN_LINEAR_WEIGHTS:
        return ["fp32"]
    key, description = _choice_key(model, candidates)
    memo = (str(choices_path()), key)
    if memo not in _RANKINGS:
        def measure() -> dict:
            rates = _measure(model, candidates)
            return {**description, "ranking": rank(rates),
                    "tokens_per_second": {p: round(r, 1) for p, r in rates.items()}}

        def usable(entry: dict) -> bool:
            ranking = entry.get("ranking")
            return isinstance(ranking, list) and bool(ranking) and set(ranking) <= set(candidates) \
                and "fp32" in ranking

        _RANKINGS[memo] = GENERATION_CHOICES.recall_or_measure(key, measure, usable)[0]["ranking"]
    return _RANKINGS[memo]


def rank(rates: dict[str, float]) -> list[str]:
    """Precisions by tokens/s, fastest first, but fp32 first unless another beats it by AUTO_MARGIN."""
    order = sorted(rates, key=rates.get, reverse=True)
    if "fp32" in rates and rates[order[0]] < AUTO_MARGIN * rates["fp32"]:
        order.remove("fp32")
        order.insert(0, "fp32")
    return order


def _measure(model: nn.Module, candidates: tuple[str, ...]) -> dict[str, float]:
    """Tokens/s of each candidate that runs and agrees with fp32 (copies of the others are dropped)."""
    runners = {}
    for precision in candidates:
        if precision == "fp32":
            runners[precision] = model
            continue
        try:
            made = _copy(model, precision)
        except KERNEL_ERRORS as e:
            warn(f"{precision} generation fails on this machine ({_first_line(e)}); --precision auto does not "
                 "use it")
            continue
        if _agrees(model, precision, made):
            runners[precision] = made.module
        else:
            warn(f"{precision} generation disagrees with fp32 on this machine; --precision auto does not use it")
    rates = decode_rates(runners, model)
    best = rank(rates)[0]
    for precision in candidates:  # keep only the copy that will be used: less memory
        if precision != best:
            _COPIES.get(model, {}).pop(precision, None)
    return rates


def _choice_key(model: nn.Module, candidates: tuple[str, ...]) -> tuple[str, dict]:
    """The cache key of a measurement, and what it describes (stored with it for people)."""
    description = {
        "cpu": devices.cpu_model(), "capability": devices.cpu_capability(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "candidates": list(candidates),
        "model": model_fingerprint(model),
        "model_description": model.describe() if hasattr(model, "describe") else type(model).__name__,
    }
    key = " | ".join(str(description[k]) for k in ("cpu", "capability", "torch", "threads", "candidates", "model"))
    return key, description


def choices_path() -> Path:
    return GENERATION_CHOICES.path
