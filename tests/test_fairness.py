"""Fairness across sites (``flamby_flare.fairness``) against a direct computation, and where it shows."""

import math

import numpy as np
import pytest

from flamby_flare.fairness import describe, fairness


def test_worst_gap_and_spread_are_what_they_say():
    per_site = {"site-1": 0.7596, "site-2": 0.6966, "site-3": 0.6875, "site-4": 0.6222}
    values = np.array(list(per_site.values()))
    got = fairness(per_site)
    assert got["worst_site"] == "site-4" and got["worst"] == values.min()
    assert got["gap"] == pytest.approx(values.max() - values.min(), abs=1e-15)
    assert got["spread"] == pytest.approx(values.std(ddof=0), rel=1e-12)  # the sites are the whole federation
    assert describe(got) == "worst 0.6222 (site-4) | best-worst gap 0.1374 | spread 0.0487"


def test_sites_without_a_value_are_left_out():
    got = fairness({"site-1": 0.5, "site-2": math.nan, "site-3": None, "site-4": 0.9})
    assert (got["worst_site"], got["gap"], got["spread"]) == ("site-1", pytest.approx(0.4), pytest.approx(0.2))
    nothing = fairness({"site-1": math.nan})
    assert nothing["worst_site"] is None and math.isnan(nothing["worst"]) and math.isnan(nothing["gap"])
    assert describe(nothing) == "worst nan | best-worst gap nan | spread nan"
    assert fairness({"site-2": 0.8}) == {"worst": 0.8, "worst_site": "site-2", "gap": 0.0, "spread": 0.0}
