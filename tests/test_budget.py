"""tinylm.training.budget: when training stops and why, the learning-rate schedule and the run's ETA."""

from __future__ import annotations

import time

import pytest

from tinylm.config import TrainConfig
from tinylm.errors import TinyLMError
from tinylm.training.budget import Budget, lr_at
from tinylm.training.loop import TrainingState


def state(epoch=0, bad_epochs=0, finished=False):
    return TrainingState(epoch=epoch, bad_epochs=bad_epochs, finished=finished)


def test_planned_epochs_end_the_run():
    budget = Budget(TrainConfig(epochs=3, patience=0), steps_per_epoch=10)
    assert budget.planned_steps == 30 and budget.describe() == "3 epochs"
    assert budget.another_epoch(state(epoch=2)) and not budget.another_epoch(state(epoch=3))
    assert budget.after_epoch(state(epoch=2), None) is None
    assert budget.after_epoch(state(epoch=3), None) == "epochs"
    assert not budget.another_epoch(state(epoch=1, finished=True))


def test_a_step_budget_cuts_an_epoch_short_and_says_so():
    budget = Budget(TrainConfig(epochs=None, max_steps=25), steps_per_epoch=10)
    assert budget.planned_steps == 25 and budget.describe() == "epochs until step 25"
    assert budget.after_step(24) is None and budget.after_step(25) == "max_steps"
    assert budget.after_epoch(state(epoch=2), "max_steps") == "max_steps"  # the cut, not the plan, is the reason
    assert Budget(TrainConfig(epochs=2, max_steps=100), 10).planned_steps == 20  # whichever comes first


def test_the_time_budget_counts_the_seconds_before_a_resume_and_every_rank_agrees():
    budget = Budget(TrainConfig(epochs=None, time_budget=10.0), steps_per_epoch=10, wall_before=9.9)
    assert budget.planned_steps is None and budget.describe() == "epochs until the 10 s budget"
    time.sleep(0.15)
    assert budget.wall() >= 10.0 and budget.after_step(1) == "time_budget"
    assert budget.after_step(1, any_rank=lambda hit: False) is None  # another rank decides with it


def test_patience_stops_after_epochs_without_progress():
    budget = Budget(TrainConfig(epochs=10, patience=2), steps_per_epoch=5)
    assert budget.after_epoch(state(epoch=4, bad_epochs=1), None) is None
    assert budget.after_epoch(state(epoch=4, bad_epochs=2), None) == "early_stopping"
    assert Budget(TrainConfig(epochs=10, patience=0), 5).after_epoch(state(epoch=4, bad_epochs=9), None) is None


def test_epochs_left_open_need_a_budget():
    with pytest.raises(TinyLMError, match="step or time budget"):
        TrainConfig(epochs=None)


def test_the_eta_covers_the_steps_and_evaluations_left():
    budget = Budget(TrainConfig(epochs=2, patience=0), steps_per_epoch=100)
    assert budget.eta(step=50, seconds_per_step=0.5, eval_seconds=10.0) == "1:35"  # 150 steps + 2 evaluations
    long = Budget(TrainConfig(epochs=100, patience=0), steps_per_epoch=100)
    assert long.eta(step=0, seconds_per_step=1.0, eval_seconds=0.0) == "2:46:40"
    timed = Budget(TrainConfig(epochs=None, time_budget=60.0), steps_per_epoch=100)
    assert timed.eta(step=0, seconds_per_step=1.0, eval_seconds=5.0) in ("1:05", "1:04")  # the clock, not steps


def test_the_schedule_decays_over_the_seconds_when_no_step_count_is_planned():
    cfg = TrainConfig(epochs=None, time_budget=100.0, lr=1.0, lr_schedule="linear", warmup_steps=0,
                      min_lr_ratio=0.0)
    assert lr_at(10, cfg, None, elapsed=0.0) == 1.0
    assert lr_at(10, cfg, None, elapsed=25.0) == pytest.approx(0.75)
    assert lr_at(10, cfg, None, elapsed=200.0) == 0.0


def test_diverged_says_whether_a_checkpoint_is_kept(tmp_path):
    error = Budget.diverged("the training loss became nan at step 3", tmp_path, state(epoch=0))
    assert "No checkpoint exists yet" in str(error) and "lower --lr" in str(error)
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "state.json").write_text("{}")
    assert "(epoch 2) is kept" in str(Budget.diverged("x", tmp_path, state(epoch=2)))
