"""Sample-weighted aggregation: the math, the state-dict policy, and FedAvg's use of it."""

import numpy as np
import pytest

from controllers import FedAvg, SiteResult
from controllers.aggregation import weighted_average


def test_weighted_mean_of_float_entries():
    a = {"w": np.array([1.0, 2.0], dtype=np.float32), "b": np.array(0.0, dtype=np.float32)}
    b = {"w": np.array([3.0, 6.0], dtype=np.float32), "b": np.array(4.0, dtype=np.float32)}
    out = weighted_average([a, b], [1, 3])
    np.testing.assert_allclose(out["w"], [2.5, 5.0])
    assert out["b"] == pytest.approx(3.0)
    assert out["w"].dtype == np.float32


def test_equals_flamby_update_form():
    """x + sum_i (n_i/N)(y_i - x) == sum_i (n_i/N) y_i (FLamby's FedAvg)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3))
    ys = [rng.normal(size=(5, 3)) for _ in range(4)]
    n = np.array([199, 172, 30, 85])
    expected = x + sum(ni / n.sum() * (y - x) for ni, y in zip(n, ys))
    out = weighted_average([{"p": y} for y in ys], n)["p"]
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


def test_integer_buffers_take_the_maximum():
    states = [{"num_batches_tracked": np.array(5, dtype=np.int64)}, {"num_batches_tracked": np.array(9, dtype=np.int64)}]
    out = weighted_average(states, [10, 1])
    assert out["num_batches_tracked"] == 9 and out["num_batches_tracked"].dtype == np.int64


def test_bad_weights_are_refused():
    with pytest.raises(ValueError):
        weighted_average([{"p": np.ones(1)}], [0])
    with pytest.raises(ValueError):
        weighted_average([{"p": np.ones(1)}], [1, 2])


def test_fedavg_weights_by_train_samples_in_any_order():
    ctl = FedAvg(dataset="fed_heart_disease")
    results = [SiteResult("site-1", {"p": np.array([0.0])}, 100, 0.0, 0.0), SiteResult("site-2", {"p": np.array([1.0])}, 300, 0.0, 0.0)]
    out = ctl.aggregate({"p": np.array([9.0])}, results)
    assert out["p"][0] == pytest.approx(0.75)


def test_timeouts_must_be_finite():
    with pytest.raises(ValueError, match="0 would wait forever"):
        FedAvg(dataset="fed_heart_disease", train_timeout=0)
