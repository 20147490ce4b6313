"""Stage 6 of the pipeline: measuring a model. Loss, perplexity and bits per character (evaluation/scoring.py)
and memorisation (evaluation/memorisation.py); comparing models on one corpus is in the lab (lab/compare.py).

The scoring names are here too, as they were when tinylm.evaluation was one module.
"""

from .scoring import EVAL_STREAMS, EvalResult, evaluate_text, safe_batch_size, score, summarize, token_losses

__all__ = ["EVAL_STREAMS", "EvalResult", "evaluate_text", "safe_batch_size", "score", "summarize", "token_losses"]
