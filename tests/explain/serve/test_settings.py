"""Buckets: the padded batch sizes that a served model compiles."""

from __future__ import annotations

import pytest

from explain.serve.settings import Settings


def test_buckets_are_powers_of_two_up_to_max_batch():
    assert Settings(max_batch=32).buckets == (1, 2, 4, 8, 16, 32)
    assert Settings(max_batch=12).buckets == (1, 2, 4, 8, 12)
    assert Settings(max_batch=1).buckets == (1,)


@pytest.mark.parametrize("rows, expected", [(1, 1), (3, 4), (8, 8), (9, 12), (12, 12), (13, 24), (25, 36)])
def test_bucket_pads_up_and_beyond_max_batch_to_its_multiples(rows, expected):
    assert Settings(max_batch=12).bucket(rows) == expected


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match=r"Settings.max_batch to be an int >= 1, got 0"):
        Settings(max_batch=0)
    with pytest.raises(ValueError, match="timeout_s > 0"):
        Settings(timeout_s=0)
    with pytest.raises(ValueError, match="non-empty bearer token"):
        Settings(token="")


def test_over_cap_names_the_cap_and_the_flag_and_passes_values_within():
    settings = Settings(max_steps=8)
    assert settings.over_cap("max_steps", "steps", 8) is None
    assert (
        settings.over_cap("max_steps", "steps", 9)
        == "expected steps <= 8 (the server's cap; --max-steps raises it), got 9"
    )


@pytest.mark.parametrize("cap", ["max_instances", "max_steps", "max_samples", "max_rows_per_instance", "max_restarts"])
def test_every_cap_must_be_a_positive_int(cap):
    with pytest.raises(ValueError, match=rf"Settings.{cap} to be an int >= 1, got 0"):
        Settings(**{cap: 0})
