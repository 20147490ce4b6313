"""Stage 5 of the pipeline: text out. Sampling (generation/sampling.py), temperature shown and measured
(generation/temperature.py), and the web playground (generation/playground.py).

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
