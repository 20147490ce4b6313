"""tinylm/config.py: the seeds of --seeds."""

from __future__ import annotations

import pytest

from tinylm.config import MAX_SEED, MAX_SEEDS, TrainConfig, parse_seeds
from tinylm.errors import TinyLMError


def test_seeds_are_a_count_a_range_or_a_list():
    assert parse_seeds("3", start=1337) == [1337, 1338, 1339]
    assert parse_seeds(5, start=1) == [1, 2, 3, 4, 5]
    assert parse_seeds("1-5") == [1, 2, 3, 4, 5]
    assert parse_seeds(" 1,7, 42 ") == [1, 7, 42]
    assert parse_seeds("7-7") == [7]


@pytest.mark.parametrize("bad", ["0", "", "abc", "5-1", "1,1", "-3", f"0-{MAX_SEEDS}", str(MAX_SEEDS + 1),
                                 f"{MAX_SEED},{MAX_SEED + 1}", "1-2-3", "²", "1,,x"])
def test_other_seeds_are_one_line_that_shows_the_forms(bad):
    with pytest.raises(TinyLMError, match=r"--seeds takes a count \(5\), a range \(1-5\) or a list") as error:
        parse_seeds(bad)
    assert "\n" not in str(error.value)


def test_a_seed_past_32_bits_is_refused_by_the_config_too():
    assert TrainConfig(seed=MAX_SEED).seed == MAX_SEED
    with pytest.raises(TinyLMError, match=f"--seed must be a whole number from 0 to {MAX_SEED}"):
        TrainConfig(seed=MAX_SEED + 1)
