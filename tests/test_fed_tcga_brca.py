"""Fed-TCGA-BRCA against FLamby's semantics (reference §1.4); Cox loss and C-index against lifelines."""

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from lifelines import CoxPHFitter
from lifelines.utils import concordance_index

from flamby_flare.datasets import fed_tcga_brca as tcga

TRAIN_SIZES, TEST_SIZES = [248, 156, 164, 129, 129, 40], [63, 40, 42, 33, 33, 11]


def test_constants_match_flamby():
    assert (tcga.NUM_CLIENTS, tcga.BATCH_SIZE, tcga.LR, tcga.NUM_EPOCHS_POOLED) == (6, 8, 0.1, 30)
    assert tcga.get_nb_max_rounds(100) == 5


@pytest.mark.parametrize("center", range(6))
def test_sizes_columns_and_regions(tcga_dir, center):
    train = tcga.FedTcgaBrca(center, train=True, data_path=tcga_dir)
    test = tcga.FedTcgaBrca(center, train=False, data_path=tcga_dir)
    assert (len(train), len(test)) == (TRAIN_SIZES[center], TEST_SIZES[center])
    brca = pd.read_csv(tcga_dir / "brca.csv").set_index("pid")
    np.testing.assert_array_equal(train.X.numpy(), brca.loc[train.pids].iloc[:, 0:39].to_numpy(np.float32))
    np.testing.assert_array_equal(train.y.numpy(), brca.loc[train.pids][["E", "T"]].to_numpy(np.float32))
    # every patient's tissue source site lies in the center's region (centers.csv)
    regions = pd.read_csv(tcga_dir / "centers.csv").set_index("TSS Code")["Region"]
    tss = {pid.split("-")[1] for pid in train.pids + test.pids}
    assert {regions[t] for t in tss} == {tcga.CENTER_NAMES[center]}
    assert train.X[:, 0].max() > 20  # age stays in years: FLamby does not normalize it


def test_pooled_split(tcga_dir):
    assert len(tcga.FedTcgaBrca(train=True, pooled=True, data_path=tcga_dir)) == sum(TRAIN_SIZES)
    assert len(tcga.FedTcgaBrca(train=False, pooled=True, data_path=tcga_dir)) == sum(TEST_SIZES)


def _brute_force_cox(scores, E, T):
    """-(1/n) sum_i E_i [s_i - log sum_{j: T_j >= T_i} exp s_j] with no ties."""
    n = len(scores)
    return -sum(E[i] * (scores[i] - np.log(np.exp(scores[T >= T[i]]).sum())) for i in range(n)) / n


def test_cox_loss_matches_lifelines_partial_likelihood():
    rng = np.random.default_rng(0)
    n = 40
    X = rng.normal(size=(n, 2))
    T = rng.permutation(np.arange(1, n + 1)).astype(float) * 10  # no ties
    E = (rng.random(n) < 0.7).astype(float)
    cph = CoxPHFitter().fit(pd.DataFrame({"x0": X[:, 0], "x1": X[:, 1], "T": T, "E": E}), "T", "E")
    scores = X @ cph.params_.to_numpy()
    loss = tcga.BaselineLoss()(torch.tensor(scores)[:, None], torch.tensor(np.stack([E, T], 1)))
    assert float(loss) == pytest.approx(-cph.log_likelihood_ / n, rel=1e-9)
    assert float(loss) == pytest.approx(_brute_force_cox(scores, E, T), rel=1e-9)


def test_cox_loss_sorts_stably_and_stays_finite():
    truth = torch.tensor([[1.0, 5.0], [0.0, 9.0], [1.0, 1.0], [1.0, 7.0]])
    scores = torch.tensor([[0.3], [-1.0], [2.0], [0.1]], requires_grad=True)
    loss = tcga.BaselineLoss()(scores, truth)
    assert loss.item() == pytest.approx(
        _brute_force_cox(scores.detach().numpy()[:, 0], truth[:, 0].numpy(), truth[:, 1].numpy())
    )
    loss.backward()
    assert torch.isfinite(scores.grad).all()
    extreme = tcga.BaselineLoss()(
        torch.tensor([[-400.0], [0.0], [400.0]]), torch.tensor([[1.0, 3.0], [1.0, 2.0], [1.0, 1.0]])
    )
    assert torch.isfinite(extreme)


def test_c_index_matches_lifelines_and_pair_counting():
    rng = np.random.default_rng(1)
    n = 30
    T = rng.permutation(n).astype(float) + 1  # distinct times: every pair's order is defined
    E, pred = (rng.random(n) < 0.6).astype(float), rng.normal(size=n)
    value = tcga.metric(np.stack([E, T], 1), pred[:, None])
    assert value == concordance_index(T, -pred, E)
    concordant = ties = comparable = 0
    for i, j in itertools.permutations(range(n), 2):
        if E[i] and T[i] < T[j]:  # i failed first: higher risk expected
            comparable += 1
            concordant += pred[i] > pred[j]
            ties += pred[i] == pred[j]
    assert value == pytest.approx((concordant + 0.5 * ties) / comparable)


def test_baseline_shape():
    model = tcga.Baseline()
    assert model(torch.zeros(5, 39)).shape == (5, 1)
    assert sum(p.numel() for p in model.parameters()) == 40
