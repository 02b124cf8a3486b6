"""The lengths histogram a curate manifest keeps: hand-computed bins, and an outlier that cannot squeeze the
other rows into one bar."""

from __future__ import annotations

from llmforge.curate.run import histogram


def test_bins_are_a_character_wide_for_short_rows_and_the_last_holds_the_longer_ones():
    found = histogram([5, 5, 6, 100], [5])
    assert found["edges"] == [0, 1, 2, 3, 4, 5, 6, 7]  # the 99th percentile (6) + 1
    assert found["before"] == [0, 0, 0, 0, 0, 2, 2]  # 100 counted in the last bin
    assert found["after"] == [0, 0, 0, 0, 0, 1, 0]
    assert found["longest"] == 100


def test_long_rows_share_forty_bins_and_nothing_is_lost():
    before = list(range(1000)) + [50_000]
    found = histogram(before, before[:10])
    assert len(found["before"]) == 40 and sum(found["before"]) == 1001 and sum(found["after"]) == 10
    assert found["edges"][-1] < 1000  # the outlier does not set the scale
    assert histogram([], [])["before"] == [0]
