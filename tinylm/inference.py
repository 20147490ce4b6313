"""A fast path for generation: an inference-only copy of any model whose Linear layers compute in bf16 (or
with int8 weights).

At batch 1 a model reads every weight once per token and does little arithmetic with it, so on a CPU the
time goes into streaming the weights from memory: the gpt-gpu preset's 42 MB of fp32 weights overflow the
caches and are fetched again for every token. Stored in bf16 and reordered once into oneDNN's blocked
layout, the same Linear layers take half the bytes (21 MB, which stay in a 32 MB L3 cache) and a kernel
that skips the per-call weight reorder; with int8 weights (one scale per output) a quarter of the bytes.

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
  fastest and the least exact (logits within ~2%); a layer the kernel cannot take stays bf16;
- "auto" (the default of sampling): where the fast path pays (a CPU with native bf16 dot products and a
  model big enough: AUTO_MIN_INT8_LINEAR_WEIGHTS, AUTO_MIN_LINEAR_WEIGHTS), int8 on x86-64 (where it was
  measured: 1.3-1.5x bf16's tokens/s, validation loss +0.01%), bf16 elsewhere; else fp32. An int8 copy
  chosen by auto is checked once against fp32 on a probe sequence, and replaced by bf16 (with a warning)
  if its logits are further off than TOLERANCES allows.
The copy is for inference only: it refuses `train()`, its weights do not require gradients, and it cannot
be saved or copied again (oneDNN's packed tensors have no storage).
"""

from __future__ import annotations

import copy
import platform
import warnings
import weakref
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import TinyLMError

PRECISIONS = ("auto", "fp32", "bf16", "int8")

AUTO_MIN_LINEAR_WEIGHTS = 2_000_000
"""`auto` uses bf16 from this many Linear weights on (8 MB in fp32). Below, the weights stay in the CPU's
caches between tokens and each Linear's fixed cost in oneDNN (~15 us a call, against ~5 us for F.linear)
outweighs what bf16 saves. Measured, bf16 against fp32 tokens/s at 1 thread for GPTs of 0.8M, 1.8M, 3.2M,
4.7M and 10.6M Linear weights: 0.67x, 1.03x, 1.25x, 1.29x, 1.62x (a 2-core AMD EPYC, 32 MB L3)."""

AUTO_MIN_INT8_LINEAR_WEIGHTS = 750_000
"""`auto` uses int8 (where int8_kernel_available) from this many Linear weights on: its fixed cost per call
is lower than oneDNN's. Measured, int8 against fp32 tokens/s at 1 thread for GPTs of 0.4M, 0.8M, 1.8M and
10.6M Linear weights: 0.78x, 1.18-1.35x (three runs), 2.13x, 2.6-2.7x."""

TOLERANCES = {"bf16": 2e-2, "int8": 4e-2}
"""Max |logit difference| against fp32, as a share of the largest |fp32 logit|, that the tests allow
(measured on small random models: bf16 up to ~1.2%, int8 up to ~1.6%)."""

INT8_BLOCK = 16
"""Int8Linear needs in_features to be a multiple of this: torch's AVX512 int8 kernel reads the inputs 16 at
a time and crashes on a remainder (torch 2.13); such layers stay bf16."""


def bf16_packing_supported() -> bool:
    """Whether oneDNN can pack and run bf16 Linear weights on this CPU (native or emulated bf16)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN, or without these ops
        return False


def native_bf16_cpu() -> bool:
    """Whether the CPU has bf16 dot-product instructions (x86: AVX512-BF16 or AMX; Arm: oneDNN's check).
    Without them oneDNN emulates bf16 and saves little or nothing, so `auto` keeps fp32 there."""
    if not bf16_packing_supported():
        return False
    if platform.machine().lower() in ("arm64", "aarch64"):
        return True  # oneDNN reports bf16 on Arm only where the CPU has the BF16 extension
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def linear_weights(model: nn.Module) -> int:
    """Number of weights in the model's nn.Linear layers (what the fast path converts)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))


def resolve_precision(model: nn.Module, precision: str, device: torch.device | str = "cpu") -> str:
    """"fp32", "bf16" or "int8": what `precision` means for this model on this device."""
    if precision not in PRECISIONS:
        raise TinyLMError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    on_cpu = torch.device(device).type == "cpu"
    if precision == "int8" and not on_cpu:
        raise TinyLMError(f"--precision int8 runs on CPUs only (this model is on {device}); use bf16 or fp32")
    if precision != "auto":
        return precision
    if not (on_cpu and native_bf16_cpu()):
        return "fp32"
    weights = linear_weights(model)
    if int8_kernel_available() and weights >= AUTO_MIN_INT8_LINEAR_WEIGHTS:
        return "int8"
    return "bf16" if weights >= AUTO_MIN_LINEAR_WEIGHTS else "fp32"


def int8_kernel_available() -> bool:
    """Whether `auto` may pick int8: torch has the weight-only int8 kernel (`_weight_int8pack_mm`, a private
    op) and the CPU is x86-64, where it was measured. Elsewhere `--precision int8` still works when asked."""
    return hasattr(torch, "_weight_int8pack_mm") and platform.machine().lower() in ("x86_64", "amd64")


class _InferenceOnly(nn.Module):
    """A layer that only runs forward passes: `train()` is refused, so an inference copy never trains."""

    in_features: int
    out_features: int

    def train(self, mode: bool = True) -> _InferenceOnly:
        if mode:
            raise TinyLMError("this is an inference copy of a model (tinylm.inference): train the original")
        return super().train(False)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def _back(y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return y.float() if like.dtype == torch.float32 else y.to(like.dtype)  # .float(): the cheaper call


class PackedLinear(_InferenceOnly):
    """nn.Linear with its weight in bf16, reordered once into oneDNN's blocked layout (no per-call reorder).
    Input and output keep their dtype; only the product is computed in bf16 (accumulated in fp32), and the
    bias stays fp32 (oneDNN adds it before rounding the output, at no extra cost)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # an opaque oneDNN tensor: a plain attribute, not a buffer, so that state_dict() never meets it
        self.packed = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach().to(torch.bfloat16))
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _back(torch.ops.mkldnn._linear_pointwise(x.bfloat16(), self.packed, self.bias, "none", [], ""), x)


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
        return F.linear(x.to(torch.bfloat16), self.weight, self.bias).to(x.dtype)


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
        self.register_buffer("weight", q, persistent=False)
        self.register_buffer("scale", scale, persistent=False)
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).bfloat16().contiguous()
        if rows.size(0) == 0:
            return x.new_zeros(*x.shape[:-1], self.out_features)
        y = torch._weight_int8pack_mm(rows, self.weight, self.scale).view(*x.shape[:-1], self.out_features)
        y = _back(y, x)
        return y if self.bias is None else y + self.bias


def _fast_linear(linear: nn.Linear, precision: str) -> nn.Module:
    on_cpu = linear.weight.device.type == "cpu"
    if precision == "int8" and on_cpu and linear.in_features % INT8_BLOCK == 0:
        return Int8Linear(linear)
    return PackedLinear(linear) if on_cpu and bf16_packing_supported() else BF16Linear(linear)


def inference_copy(model: nn.Module, precision: str = "bf16") -> nn.Module:
    """An inference-only copy of `model` in eval mode, its nn.Linear layers computing in `precision`
    ("bf16" or "int8"; "fp32" gives a plain frozen copy). The original is not modified. Generic: the copy
    follows the same `logits, state = model(ids, state)` contract whatever the family."""
    if precision not in ("fp32", "bf16", "int8"):
        raise TinyLMError(f"inference_copy takes fp32, bf16 or int8, got {precision!r} (resolve 'auto' first)")
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
    return fast


# model -> {precision: (weights signature, copy)}: a copy per model and precision, rebuilt when the weights change
_COPIES: weakref.WeakKeyDictionary[nn.Module, dict[str, tuple[Any, nn.Module]]] = weakref.WeakKeyDictionary()


def _signature(model: nn.Module) -> tuple:
    """Changes when any weight is replaced or modified in place (an optimizer step, load_state_dict, .to())."""
    return tuple((t.data_ptr(), _version(t)) for t in (*model.parameters(), *model.buffers()))


def _version(t: torch.Tensor) -> int | None:
    try:
        return t._version
    except RuntimeError:  # a tensor made under inference_mode keeps no version counter
        return None


def model_for_generation(model: nn.Module, precision: str = "auto", device: torch.device | str = "cpu") -> nn.Module:
    """The module to generate with: `model` itself for fp32 (or when it is an inference copy already), else its
    inference copy in that precision, made once and rebuilt when the model's weights have changed since (e.g.
    between two epochs of training)."""
    if hasattr(model, "inference_precision"):
        return model
    requested, precision = precision, resolve_precision(model, precision, device)
    if precision == "fp32":
        return model
    key = "auto" if requested == "auto" else precision  # what auto chose may differ from an explicit choice
    copies = _COPIES.setdefault(model, {})
    signature = _signature(model)
    cached = copies.pop(key, None)  # a stale copy goes before the new one is built: less memory at once
    if cached is not None and cached[0] == signature:
        fast = cached[1]
    else:
        fast = inference_copy(model, precision)
        if key == "auto" and precision == "int8" and not agrees_with_fp32(model, fast, TOLERANCES["int8"]):
            warnings.warn("int8 generation disagrees with fp32 on this machine; generating in bf16 instead "
                          "(choose with --precision)", RuntimeWarning, stacklevel=2)
            fast = inference_copy(model, "bf16")
    copies[key] = (signature, fast)
    return fast


def agrees_with_fp32(model: nn.Module, fast: nn.Module, tolerance: float, probe_tokens: int = 16) -> bool:
    """Whether `fast` gives `model`'s logits within `tolerance` x the largest |logit| on a fixed probe sequence
    (a check that a kernel does what it should on this machine, not a measure of quality)."""
    vocab = getattr(getattr(model, "config", None), "vocab_size", 0)
    if not vocab:
        return True  # nothing to probe with
    device = next(model.parameters()).device
    ids = (torch.arange(probe_tokens, device=device) * 7 % vocab).view(1, -1)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            expected, _ = model(ids, None)
            got, _ = fast(ids, None)
    finally:
        model.train(was_training)
    expected, got = expected.float(), got.float()
    return bool((got - expected).abs().max() <= tolerance * expected.abs().max().clamp_min(1e-6))
