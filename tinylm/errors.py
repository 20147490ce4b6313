"""The one exception type for mistakes a user can fix (bad flags, missing files, bad data).

The CLI prints a TinyLMError as a single line on stderr and exits with code 2; anything else is a bug
and keeps its traceback.
"""


class TinyLMError(Exception):
    """A user-facing error: the message says what is wrong and how to fix it."""


class NonFiniteScores(TinyLMError):
    """The model's next-token scores are NaN or infinite (damaged weights, or training diverged)."""


def check_choices(config) -> None:
    """Refuse a field of `config` (a dataclass) whose value is not one of those its class declares in
    `CHOICES` ({field: allowed values}): the one list the validation and the CLI's `choices=` both read."""
    for name, allowed in getattr(config, "CHOICES", {}).items():
        value = getattr(config, name)
        if value not in allowed:
            listed = ", ".join(allowed[:-1]) + f" or {allowed[-1]}" if len(allowed) > 1 else allowed[0]
            raise TinyLMError(f"--{name.replace('_', '-')} must be {listed}, got {value!r}")
