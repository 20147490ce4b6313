"""Stage 5 of the pipeline: text out, token by token (generation/sampling.py). The temperature lab and the web
playground that use it are in tinylm/lab/.

The sampling names are here too, as they were when tinylm.generation was one module.
"""

from .sampling import (
    MAX_NEW_TOKENS_LIMIT,
    SamplingConfig,
    choose_next,
    filter_logits,
    generate_ids,
    tempered_softmax,
)

__all__ = ["MAX_NEW_TOKENS_LIMIT", "SamplingConfig", "choose_next", "filter_logits", "generate_ids",
           "tempered_softmax"]
