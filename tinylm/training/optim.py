"""Optimizers of the training loop: Adam / AdamW, or Muon for the hidden matrices with AdamW for the rest.

    optimizer = build_optimizer(model, train_config)        # --optimizer adam | adamw | muon
    for group in optimizer.param_groups:                     # the LR schedule, each group at its own scale
        group["lr"] = lr_at(step, ...) * group["lr_scale"]
    optimizer.zero_grad(set_to_none=True); loss.backward(); optimizer.step()
    optimizer.state_dict(), optimizer.load_state_dict(...)   # torch.optim's layout, saved in checkpoints

Muon (Keller Jordan, 2024: https://kellerjordan.github.io/posts/muon/) updates a weight matrix with its
momentum made orthogonal (all singular values ~1, by 5 Newton-Schulz iterations), so every direction of the
matrix moves at the same rate however skewed the gradient is. It is meant for the 2-D weights of the hidden
layers only: embeddings, the output head, norms and biases stay with AdamW. Here `lr` is AdamW's peak and
`muon_lr` Muon's; each group keeps its ratio to `lr` in "lr_scale" so one schedule drives both. The
Newton-Schulz iterations run in bf16, as torch.optim.Muon's, where the device multiplies bf16 matrices natively
(a GPU, a CPU with native bf16), and in fp32 elsewhere: on a CPU without native bf16 oneDNN emulates bf16, and
the iterations took 61% of a small GPT's step (bench/README.md, "Muon without native bf16").

Why not torch.optim's classes, whose updates these are: building any torch.optim.Optimizer imports
torch._dynamo (its add_param_group, zero_grad, state_dict and load_state_dict are wrapped in
torch._disable_dynamo, which imports it on first call; Adam's step imports it too). That import took 1.6 s on
a 2-core CPU (torch 2.13) and 5.5-7 s on the GPU machine of the Performance issue: half of a 10-second
budget. `Optimizer` below keeps torch.optim's param_groups and state layout and runs the same update code
(torch.optim.adam.adam, the functional API that Adam and AdamW's step call, and torch.optim.Muon's update
copied below), so its results are bit-identical to torch.optim.Adam, AdamW and Muon (tests/test_optim.py
checks all three) and checkpoints written with torch.optim.Adam / AdamW still resume.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.optim.adam import adam as adam_update

from ..machine.devices import native_bf16_cpu

ADAM_EPS = 1e-8  # torch.optim.Adam's default
MUON_MOMENTUM = 0.95  # Nesterov momentum, as torch.optim.Muon and Keller Jordan's Muon
MUON_NS_STEPS = 5
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # quintic Newton-Schulz, tuned for speed over exactness
NS_EPS = 1e-7
GRAM_FORM_RATIO = 2  # the Gram form takes fewer flops from about m = 1.9 n (5 steps); see _newton_schulz_gram


def hidden_matrices(model: nn.Module) -> list[nn.Parameter]:
    """The parameters Muon updates: the model's own answer (LanguageModel.hidden_matrices: 2-D weights other than
    embeddings, a head tied to one, and the output head)."""
    return model.hidden_matrices()


def build_optimizer(model: nn.Module, cfg) -> Optimizer:
    """The optimizer of TrainConfig `cfg` for `model`: one Adam(W) group for every parameter (adam, adamw),
    or for muon an AdamW group at `lr` (embeddings, head, norms, biases) and a Muon group at `muon_lr`."""
    params = list(model.parameters())
    adam = {"kind": "adam" if cfg.optimizer == "adam" else "adamw", "lr": cfg.lr, "lr_scale": 1.0,
            "betas": tuple(cfg.betas), "eps": ADAM_EPS, "weight_decay": cfg.weight_decay,
            # torch's default implementation (per tensor on CPU, foreach on GPU) unless fused is asked for
            "foreach": None, "fused": True if getattr(cfg, "fused", False) else None}
    if cfg.optimizer != "muon":
        return Optimizer([{"params": params, **adam}])
    hidden = {id(p) for p in hidden_matrices(model)}
    muon = {"kind": "muon", "lr": cfg.muon_lr, "lr_scale": cfg.muon_lr / cfg.lr, "momentum": MUON_MOMENTUM,
            "nesterov": True, "ns_steps": MUON_NS_STEPS, "weight_decay": cfg.weight_decay}
    # AdamW first: param_groups[0]["lr"] is then the --lr schedule, as the loop's records report it
    groups = [{"params": [p for p in params if id(p) not in hidden], **adam},
              {"params": [p for p in params if id(p) in hidden], **muon}]
    return Optimizer([g for g in groups if g["params"]], ns_dtype=newton_schulz_dtype(params[0].device))


def newton_schulz_dtype(device: torch.device) -> torch.dtype:
    """The dtype of Muon's Newton-Schulz iterations on `device`: bf16 where it is native, else fp32."""
    if device.type == "cpu":
        return torch.bfloat16 if native_bf16_cpu() else torch.float32
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float32
    return torch.bfloat16


class Optimizer:
    """Parameter groups, each updated by the rule its "kind" names (adam, adamw or muon), behind
    torch.optim.Optimizer's interface: param_groups, state, zero_grad, step, state_dict, load_state_dict."""

    def __init__(self, param_groups: list[dict[str, Any]], ns_dtype: torch.dtype = torch.bfloat16):
        self.param_groups = param_groups
        self.ns_dtype = ns_dtype  # Muon's Newton-Schulz: this machine's choice, not saved with the state
        self.state: dict[nn.Parameter, dict[str, torch.Tensor]] = {}

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().requires_grad_(False).zero_()

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["kind"] == "muon":
                self._muon_step(group)
            else:
                self._adam_step(group)
        return loss

    def _adam_step(self, group: dict[str, Any]) -> None:
        """What torch.optim.Adam / AdamW's step does for one group (without amsgrad, maximize, capturable)."""
        params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state.setdefault(p, {})
            if not state:  # as torch: the step count on the CPU, except for the fused kernel
                state["step"] = (torch.zeros((), dtype=torch.float32, device=p.device) if group["fused"]
                                 else torch.tensor(0.0, dtype=torch.float32))
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        if not params:
            return
        beta1, beta2 = group["betas"]
        adam_update(params, grads, exp_avgs, exp_avg_sqs, [], steps, foreach=group["foreach"], capturable=False,
                    differentiable=False, fused=group["fused"], grad_scale=None, found_inf=None, has_complex=False,
                    decoupled_weight_decay=group["kind"] == "adamw", amsgrad=False, beta1=beta1, beta2=beta2,
                    lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"], maximize=False)

    def _muon_step(self, group: dict[str, Any]) -> None:
        """torch.optim.Muon's update (adjust_lr_fn "original", Keller Jordan's scaling)."""
        lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
        for p in group["params"]:
            if p.grad is None:
                continue
            state = self.state.setdefault(p, {})
            if not state:
                state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
            buffer = state["momentum_buffer"]
            buffer.lerp_(p.grad, 1 - momentum)
            update = p.grad.lerp(buffer, momentum) if group["nesterov"] else buffer
            update = orthogonalize(update, group["ns_steps"], self.ns_dtype)
            if decay:
                p.mul_(1 - lr * decay)
            # the same RMS of update whatever the shape: taller-than-wide matrices move by sqrt(rows / cols) more
            p.add_(update, alpha=-lr * math.sqrt(max(1, p.size(0) / p.size(1))))

    def state_dict(self) -> dict[str, Any]:
        """torch.optim's layout: parameters numbered across the groups in order; hyper-parameters per group."""
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            numbers = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": numbers})
        state = {index[id(p)]: dict(values) for p, values in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore from state_dict() (or torch.optim.Adam / AdamW's): the hyper-parameters of each group,
        and each parameter's state moved to its device."""
        saved_groups = state_dict["param_groups"]
        if [len(g["params"]) for g in saved_groups] != [len(g["params"]) for g in self.param_groups]:
            raise ValueError("the saved optimizer state does not match the model's parameter groups")
        owner: dict[int, tuple[nn.Parameter, dict[str, Any]]] = {}
        for group, saved in zip(self.param_groups, saved_groups):
            for number, p in zip(saved["params"], group["params"]):
                owner[int(number)] = p, group
            # how the update runs (kind, fused, foreach) is this run's choice; the numbers come from the save
            for key, value in saved.items():
                if key in group and key not in ("params", "kind", "fused", "foreach"):
                    group[key] = tuple(value) if isinstance(value, list) else value
        self.state = {}
        for number, values in state_dict["state"].items():
            p, group = owner[int(number)]
            self.state[p] = {key: _placed(value, p, key == "step", bool(group.get("fused")))
                             for key, value in values.items()}


def _placed(value: Any, p: nn.Parameter, is_step: bool, fused: bool) -> Any:
    """A copy of a state value (the caller's tensors may still be in use) where the update expects it: the
    step count on the CPU (on the parameter's device for the fused kernel), everything else on the
    parameter's device and in its floating dtype."""
    if not isinstance(value, torch.Tensor):
        return value
    if is_step:
        return value.to(dtype=torch.float32, device=p.device if fused else "cpu", copy=True)
    return value.to(dtype=p.dtype if value.is_floating_point() else value.dtype, device=p.device, copy=True)


def orthogonalize(g: torch.Tensor, steps: int, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """The matrix g with its singular values pushed towards 1 (roughly U S' V^T with S' in [0.5, 1.5] for
    g = U S V^T) by `steps` quintic Newton-Schulz iterations in `dtype`: torch.optim.Muon's computation (bf16).
    In fp32 a matrix at least twice as long as wide iterates in its Gram form (the same result, fewer products)."""
    x = g.to(dtype)
    tall = g.size(0) > g.size(1)
    if tall:  # iterate on the smaller Gram matrix
        x = x.T
    x = x / x.norm().clamp(min=NS_EPS)  # spectral norm <= Frobenius norm = 1
    if dtype == torch.float32 and x.size(1) >= GRAM_FORM_RATIO * x.size(0):
        x = _newton_schulz_gram(x, steps)
    else:
        a, b, c = NS_COEFFICIENTS
        for _ in range(steps):
            gram = x @ x.T
            x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)  # a x + (b G + c G^2) x
    return x.T if tall else x


def _newton_schulz_gram(x: torch.Tensor, steps: int) -> torch.Tensor:
    """The quintic iteration on a wide n x m matrix x, carried out on n x n matrices only. Each step multiplies x
    by p = a + b R + c R^2 with R = x x^T; every p is a polynomial in the first x x^T, so they commute, and the
    steps can run on R (R <- p R p) and on their product q (q <- p q), with x multiplied by q once at the end:
    4 products of n x n matrices a step instead of 2 of n x m and 1 of n x n (for the LSTM's 384 x 1536
    recurrent weights, 40% less time on a 2-core CPU). Squaring the condition number is harmless in fp32 and
    would not be in bf16, hence fp32 only."""
    a, b, c = NS_COEFFICIENTS
    r = x @ x.T
    eye = torch.eye(r.size(0), dtype=r.dtype, device=r.device)
    q = None
    for _ in range(steps):
        p = torch.addmm(r, r, r, beta=b, alpha=c).add_(eye, alpha=a)  # a + b R + c R^2
        q = p if q is None else p @ q
        r = p @ r @ p
    return x if q is None else q @ x
