"""The German course's checks (notebooks/de/): one call per task runs the student's object against tinylm's own
version of the same thing on small inputs and says, in German, what is right and what is not, with a hint.

    from tinylm import course
    CharDataset = course.check("char_dataset", CharDataset)      # ✓ / ✗ lines; "noch nicht bearbeitet" if open

`check` returns what the notebook goes on with: the student's object once it holds, else tinylm's version where
the task has one, so an Aufgabe runs to its end before every part is done. `course.tasks()` lists the tasks.

The tasks, by lesson: 000 `vocabulary`, `sequences`, `lstm_model`, `training`, `generation`; 001 (the final
project, with the helpers in `course.project`) `decoder_model`, `training_history`; 002 (Keras) `char_index`,
`title_batch`, `keras_model`, `generate`, `generate_soft`; 003 `rnn_patterns`, `sample_next`; 004 (Lightning)
`char_maps`, `char_dataset`, `lit_char_rnn`, `tempered_softmax`, `early_stopping`, `generate_text`.
"""

from __future__ import annotations

from . import characters, news_titles, patterns, project, shakespeare  # noqa: F401 - they register the tasks
from .checking import TASKS, Report, check, evaluate

__all__ = ["Report", "check", "evaluate", "project", "tasks"]


def tasks() -> dict[str, str]:
    """{task name: its title} of every check."""
    return {name: spec.title for name, spec in TASKS.items()}
