"""Generation through llama.cpp: a GPT's weights in q8_0 (8-bit blocks of 32), run by llama.cpp's kernels, behind
tinylm's own contract `logits, state = model(ids, state)`.

    engine = LlamaCppGPT(gpt)                  # writes a q8_0 GGUF of the weights, loads it into llama.cpp
    logits, state = engine(ids, None)          # (1, T) ids -> (1, T, V) logits, as the GPT's own forward

At batch 1 a CPU spends a token's time streaming the weights; llama.cpp's q8_0 matrix-vector kernels read a
quarter of fp32's bytes and run them with hand-written SIMD, which is why it is 2-2.5x tinylm's fastest torch
path on a 2-core EPYC (bench/formats.py). Only the logits come from llama.cpp: tokenizing, sampling
(temperature, top-k, top-p, seeds, banned ids, <eos>) stay tinylm's, so a text sampled through this engine
follows the same rules as one sampled through torch. It is one of the candidates `--precision auto` measures
(tinylm.machine.fast_inference), where the `llama-cpp-python` and `gguf` packages are installed; it is
checked against fp32 like the others before it is used.

The state is the tuple of token ids in llama.cpp's context; a call whose state is not the context's (a branch
from an earlier state) rewinds to their common prefix first. The context slides as the GPT's does
(tinylm.models.gpt): when it holds block_size tokens and another comes, the last block_size // 2 are
re-encoded from position 0, so texts longer than the block equal the torch path's too. Batch 1 only (a
llama.cpp context holds one sequence here); texts generated at the same time take turns, each call rewinding
to its own state.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
import threading
import weakref

import numpy as np
import torch
from torch import nn


def available() -> bool:
    """Whether llama.cpp (llama-cpp-python) and the gguf writer are installed."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("llama_cpp", "gguf"))


def runs_model(model: nn.Module) -> bool:
    """Whether this engine can run `model`: a GPT built like GPT-2 whose matrices split into q8_0 blocks."""
    from ..models.gguf_file import q8_0_fits
    from ..models.gpt import GPT

    return isinstance(model, GPT) and not model.config.gpt2_incompatibilities() and q8_0_fits(model)


class LlamaCppGPT(nn.Module):
    """An inference-only GPT whose forward runs in llama.cpp (see the module's docstring)."""

    inference_precision = "llama.cpp"
    kv_cache_dtype = None

    def __init__(self, model: nn.Module, outtype: str = "q8_0"):
        super().__init__()
        import llama_cpp
        from llama_cpp._utils import suppress_stdout_stderr

        from ..models.gguf_file import write_gguf

        self.config = model.config
        self.block = model.config.block_size
        handle, path = tempfile.mkstemp(suffix=".gguf", prefix="tinylm-")
        os.close(handle)
        try:
            write_gguf(model, path, outtype)
            # read into memory (no mmap), so that the file can go at once
            with suppress_stdout_stderr(disable=False):  # llama.cpp's own log lines, e.g. about its context size
                self.llm = llama_cpp.Llama(path, n_ctx=self.block, n_batch=self.block, n_ubatch=self.block,
                                           n_threads=torch.get_num_threads(), use_mmap=False, logits_all=True,
                                           verbose=False)
                self.llm.eval([0])  # the context is made on the first evaluation: quietly, here
                self.llm.n_tokens = 0
        except ValueError as e:  # llama-cpp-python's word for "llama.cpp could not load it"
            raise RuntimeError(f"llama.cpp cannot load this GPT ({e})") from None
        finally:
            os.unlink(path)
        # freed before the interpreter tears down the modules llama-cpp-python's own finaliser needs
        weakref.finalize(self, self.llm.close)
        self._threads = torch.get_num_threads()
        self._context: list[int] = []
        self._lock = threading.Lock()
        self.vocab = model.config.vocab_size
        self._token = (llama_cpp.llama_token * 1)()
        self._one_token = llama_cpp.llama_batch_get_one(self._token, 1)  # a view of _token: made once
        self._logits_address, self._logits = None, None
        super().train(False)

    @property
    def context_window(self) -> int:
        """The most tokens of a prompt that matter (as the GPT's own: its block)."""
        return self.block

    def train(self, mode: bool = True):
        if mode:
            raise RuntimeError("a llama.cpp engine is for generation only")
        return super().train(False)

    def forward(self, ids: torch.Tensor, state: tuple[int, ...] | None = None):
        if ids.dim() != 2 or ids.size(0) != 1:
            raise RuntimeError(f"the llama.cpp engine generates one sequence at a time, got ids of shape "
                               f"{tuple(ids.shape)}")
        with self._lock:  # one llama.cpp context: texts generated at once (the playground's users) take turns
            return self._forward(ids[0].tolist(), list(state or ()))

    def _forward(self, pending: list[int], state: list[int]):
        self._follow_threads()
        self._rewind(state)
        rows = []
        while pending:
            if len(self._context) == self.block:  # the GPT's slide: the last half, re-encoded from position 0
                kept = self._context[-(self.block // 2):]
                self._rewind([])
                self._eval(kept)
            take, pending = pending[: self.block - len(self._context)], pending[self.block - len(self._context):]
            if len(take) == 1:
                rows.append(self._step(take[0]))
                continue
            self._eval(take)
            end = self.llm.n_tokens
            rows.append(torch.from_numpy(self.llm.scores[end - len(take): end].copy()))
        logits = rows[0] if len(rows) == 1 else torch.cat(rows)  # one row: every generation step
        return logits.unsqueeze(0), tuple(self._context)

    def _step(self, token: int) -> torch.Tensor:
        """One token, straight through llama.cpp's C API: generation's every step, where llama-cpp-python's eval()
        (a batch built in Python, every position's logits kept) cost as much as tinylm's own loop. The position is
        the next after the cache's, which _rewind keeps at the context's length."""
        import llama_cpp

        self._token[0] = token
        if llama_cpp.llama_decode(self.llm.ctx, self._one_token) != 0:
            raise RuntimeError("llama.cpp could not evaluate a token")
        self.llm.n_tokens += 1
        self._context.append(token)
        pointer = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        if ctypes.addressof(pointer.contents) != self._logits_address:  # llama.cpp moved its output buffer
            self._logits_address = ctypes.addressof(pointer.contents)
            self._logits = torch.from_numpy(np.ctypeslib.as_array(pointer, shape=(1, self.vocab)))
        return self._logits.clone()  # a copy: llama.cpp writes the next step's logits there

    def _eval(self, tokens: list[int]) -> None:
        self.llm.eval(tokens)
        self._context += tokens

    def _rewind(self, wanted: list[int]) -> None:
        """Make llama.cpp's context `wanted`: keep the common prefix, evaluate the rest."""
        if wanted == self._context:  # generation's every step: the state this engine returned last
            return
        common = 0
        for a, b in zip(self._context, wanted):
            if a != b:
                break
            common += 1
        self.llm.n_tokens = common
        self.llm._ctx.kv_cache_seq_rm(-1, common, -1)  # now: _step places its token after the cache's last
        self._context = self._context[:common]
        if wanted[common:]:
            self._eval(wanted[common:])

    def _follow_threads(self) -> None:
        """Use torch's thread count, as every other generation path does (set by --threads)."""
        threads = torch.get_num_threads()
        if threads != self._threads:
            import llama_cpp

            llama_cpp.llama_set_n_threads(self.llm.ctx, threads, threads)
            self._threads = threads

    def describe(self) -> str:
        return f"llama.cpp q8_0 engine for a {self.config.layers}-layer GPT"
