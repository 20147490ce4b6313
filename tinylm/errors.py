"""The one exception type for mistakes a user can fix (bad flags, missing files, bad data).

The CLI prints a TinyLMError as a single line on stderr and exits with code 2; anything else is a bug
and keeps its traceback.
"""


class TinyLMError(Exception):
    """A user-facing error: the message says what is wrong and how to fix it."""


class NonFiniteScores(TinyLMError):
    """The model's next-token scores are NaN or infinite (damaged weights, or training diverged)."""
