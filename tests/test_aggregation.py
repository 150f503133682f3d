"""Sample-weighted aggregation: the math, the state-dict policy, and FedAvg's use of it."""

import numpy as np
import pytest

import controllers
from flamby_flare.strategies.aggregation import weighted_average
from flamby_flare.strategies.base import SiteResult
from flamby_flare.strategies.fed_avg import FedAvgStrategy


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
    states = [
        {"num_batches_tracked": np.array(5, dtype=np.int64)},
        {"num_batches_tracked": np.array(9, dtype=np.int64)},
    ]
    out = weighted_average(states, [10, 1])
    assert out["num_batches_tracked"] == 9 and out["num_batches_tracked"].dtype == np.int64


def test_bad_weights_are_refused():
    with pytest.raises(ValueError):
        weighted_average([{"p": np.ones(1)}], [0])
    with pytest.raises(ValueError):
        weighted_average([{"p": np.ones(1)}], [1, 2])


def test_fedavg_weights_by_train_samples_in_any_order():
    results = [
        SiteResult("site-1", {"p": np.array([0.0])}, 100, 0.0, 0.0),
        SiteResult("site-2", {"p": np.array([1.0])}, 300, 0.0, 0.0),
    ]
    out, state = FedAvgStrategy().aggregate({"p": np.array([9.0])}, results, {}, ["p"])
    assert out["p"][0] == pytest.approx(0.75)


def test_timeouts_must_be_finite():
    with pytest.raises(ValueError, match="controllers.FedAvg: train_timeout must be an integer >= 1, got 0"):
        controllers.FedAvg(dataset="fed_heart_disease", train_timeout=0)


def test_batchnorm_model_state_policy():
    """Running statistics are averaged like parameters; num_batches_tracked takes the max; the result loads."""
    import torch
    from torch import nn

    from flamby_flare.model_state import load_numpy_state, to_numpy_state

    def model_after(batches, scale):
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
        m.train()
        for _ in range(batches):
            m(torch.randn(8, 3) * scale)
        return m

    a, b = model_after(2, 1.0), model_after(5, 3.0)
    sa, sb = to_numpy_state(a), to_numpy_state(b)
    out = weighted_average([sa, sb], [1, 3])
    np.testing.assert_allclose(
        out["1.running_mean"], 0.25 * sa["1.running_mean"] + 0.75 * sb["1.running_mean"], rtol=1e-6
    )
    np.testing.assert_allclose(out["1.running_var"], 0.25 * sa["1.running_var"] + 0.75 * sb["1.running_var"], rtol=1e-6)
    assert out["1.num_batches_tracked"] == 5
    fresh = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    load_numpy_state(fresh, out)
    assert int(fresh[1].num_batches_tracked) == 5
