"""tinylm's GPT as a GGUF file of llama.cpp's `gpt2` architecture: the one owner of that layout, used by
`tinylm export --format gguf` (tinylm.publishing.gguf, which adds the tokenizer) and by generation through
llama.cpp (tinylm.machine.llama_engine, which needs the weights only).

The GPT matches llama.cpp's gpt2 graph exactly (learned positions, pre-LayerNorm blocks with biases, fused
qkv, tanh GELU). nn.Linear's (out, in) weights are what ggml multiplies with, as they are. The head is not
written: llama.cpp ties it to the token embedding when `output.weight` is absent. Matrices are written as
`outtype` says (f32, f16, or q8_0: 8-bit blocks of 32 values); vectors, norms and position embeddings stay
f32, as llama.cpp's converter keeps them, and a matrix whose rows are not a multiple of 32 long is f16 in a
q8_0 file (the converter's fallback too).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import TinyLMError
from .gpt import GPT

OUTTYPES = ("f32", "f16", "q8_0")
NO_MERGE = "<no-merge>"

# tinylm's parameter names -> llama.cpp's gpt2 tensor names (per block: blk.{i}.*); the head is tied.
_GLOBAL_TENSORS = {
    "transformer.wte.weight": "token_embd.weight",
    "transformer.wpe.weight": "position_embd.weight",
    "transformer.ln_f.weight": "output_norm.weight",
    "transformer.ln_f.bias": "output_norm.bias",
}
_BLOCK_TENSORS = {
    "ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output",
    "ln_2": "ffn_norm", "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down",
}


@dataclass
class GGUFVocabulary:
    """A tokenizer as llama.cpp's GPT-2 tokenizer reads it (tokenizer.ggml.*)."""

    tokens: list[str]
    merges: list[str]
    types: list[int]
    special_ids: dict[str, int] = field(default_factory=dict)
    """eos, bos, unk, pad -> id."""


def gguf_tensor_names(model: GPT) -> dict[str, str]:
    """tinylm parameter name -> GGUF tensor name, for every tensor the file holds (lm_head is tied)."""
    names = dict(_GLOBAL_TENSORS)
    for i in range(model.config.layers):
        for ours, theirs in _BLOCK_TENSORS.items():
            for kind in ("weight", "bias"):
                names[f"transformer.h.{i}.{ours}.{kind}"] = f"blk.{i}.{theirs}.{kind}"
    return names


def placeholder_vocabulary(size: int) -> GGUFVocabulary:
    """Tokens that only number the ids, for a file that is given ids and gives logits (generation through
    llama.cpp, where tinylm tokenizes): byte-level spellings no text produces."""
    import gguf

    return GGUFVocabulary([f"<id{i}>" for i in range(size)], [], [int(gguf.TokenType.CONTROL)] * size)


def q8_0_fits(model: GPT) -> bool:
    """Whether every matrix of `model` splits into q8_0's blocks of 32 (then a q8_0 file has no f16 fallback)."""
    return model.config.embed % 32 == 0


def _encoded(name: str, tensor: torch.Tensor, outtype: str):
    """(array, GGML type) of one tensor as the file stores it."""
    import gguf

    data = tensor.detach().to("cpu", torch.float32).numpy()
    types = gguf.GGMLQuantizationType
    if data.ndim < 2 or name.endswith("_norm.weight") or name.startswith("position_embd") or outtype == "f32":
        return data, types.F32
    if outtype == "q8_0" and data.shape[-1] % gguf.GGML_QUANT_SIZES[types.Q8_0][0] == 0:
        return gguf.quants.quantize(data, types.Q8_0), types.Q8_0
    return data.astype(np.float16), types.F16


def write_gguf(model: GPT, path: Path, outtype: str = "f32", vocabulary: GGUFVocabulary | None = None,
               metadata: dict[str, str] | None = None) -> None:
    """Write `model` (a GPT built like GPT-2) to the GGUF file `path`, with `vocabulary` (default: placeholder
    tokens) and `metadata` (GGUF key -> string: general.name, general.description, tinylm.*)."""
    import gguf

    if outtype not in OUTTYPES:
        raise TinyLMError(f"--outtype must be one of {', '.join(OUTTYPES)}, got {outtype!r}")
    c = model.config
    vocabulary = vocabulary or placeholder_vocabulary(c.vocab_size)
    writer = gguf.GGUFWriter(path, arch="gpt2")
    for key, value in (metadata or {}).items():
        writer.add_string(key, value)
    writer.add_context_length(c.block_size)
    writer.add_embedding_length(c.embed)
    writer.add_feed_forward_length(4 * c.embed)
    writer.add_block_count(c.layers)
    writer.add_head_count(c.heads)
    writer.add_layer_norm_eps(1e-5)
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[outtype])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(vocabulary.tokens)
    writer.add_token_types(vocabulary.types)
    # llama.cpp requires the merges key, and the writer leaves an empty list out (a char vocabulary of ASCII text
    # has no merges): then one merge that never applies, as BPE starts from single characters and no merge
    # makes its two pieces
    writer.add_token_merges(vocabulary.merges or [f"{NO_MERGE} {NO_MERGE}"])
    for name, token_id in vocabulary.special_ids.items():
        getattr(writer, f"add_{name}_token_id")(token_id)
    writer.add_add_bos_token(False)  # tinylm's texts start as they are: no token is put before a prompt
    state = model.state_dict()
    for ours, theirs in gguf_tensor_names(model).items():
        data, dtype = _encoded(theirs, state[ours], outtype)
        writer.add_tensor(theirs, data, raw_dtype=dtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
