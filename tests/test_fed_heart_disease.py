"""Fed-Heart-Disease against FLamby's semantics (reference §1.7), recomputed independently with pandas."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.model_selection import train_test_split

from flamby_flare.datasets import fed_heart_disease as heart

FILES = ["processed.cleveland.data", "processed.hungarian.data", "processed.switzerland.data", "processed.va.data"]
TRAIN_SIZES, TEST_SIZES = [199, 172, 30, 85], [104, 89, 16, 45]


def _raw_center(folder, center):
    """Plain pandas, the FLamby way: '?' -> NaN, drop cols 10-12, drop rows with NaN, split 66/34 seed 43."""
    df = pd.read_csv(folder / FILES[center], header=None).replace("?", np.nan).drop([10, 11, 12], axis=1).dropna()
    df = df.apply(pd.to_numeric)
    y = (df[13] > 0).astype(int).to_numpy()
    strat = y if min(np.bincount(y)) > 2 else None
    tr, te = train_test_split(
        np.arange(len(df)), test_size=0.34, train_size=0.66, random_state=43, shuffle=True, stratify=strat
    )
    return df.reset_index(drop=True), np.sort(tr), np.sort(te)


def _encode(df):
    cp, restecg = df[2].to_numpy(), df[6].to_numpy()
    cols = [df[c].to_numpy(float) for c in (0, 1, 3, 4, 5, 7, 8, 9)]
    cols += [(cp == v).astype(float) for v in (2, 3, 4)] + [(restecg == v).astype(float) for v in (1, 2)]
    return np.stack(cols, axis=1).astype(np.float32)


def test_constants_match_flamby():
    assert (heart.NUM_CLIENTS, heart.BATCH_SIZE, heart.LR, heart.NUM_EPOCHS_POOLED) == (4, 4, 0.001, 50)
    assert heart.Optimizer is torch.optim.Adam
    assert heart.get_nb_max_rounds(100) == 15
    assert len(heart.FEATURE_NAMES) == 13


@pytest.mark.parametrize("center", range(4))
def test_sizes_features_and_labels(heart_dir, center):
    train = heart.FedHeartDisease(center, train=True, data_path=heart_dir, normalize=False)
    test = heart.FedHeartDisease(center, train=False, data_path=heart_dir, normalize=False)
    assert (len(train), len(test)) == (TRAIN_SIZES[center], TEST_SIZES[center])
    df, tr, te = _raw_center(heart_dir, center)
    expected = _encode(df)
    np.testing.assert_array_equal(train.X.numpy(), expected[tr])
    np.testing.assert_array_equal(test.X.numpy(), expected[te])
    np.testing.assert_array_equal(train.y.numpy()[:, 0], (df[13].to_numpy()[tr] > 0).astype(np.float32))
    x, y = train[0]
    assert x.shape == (13,) and y.shape == (1,) and x.dtype == y.dtype == torch.float32


@pytest.mark.parametrize("center", range(4))
def test_per_center_normalization_uses_own_train_stats(heart_dir, center):
    raw_train = heart.FedHeartDisease(center, train=True, data_path=heart_dir, normalize=False).X
    raw_test = heart.FedHeartDisease(center, train=False, data_path=heart_dir, normalize=False).X
    train = heart.FedHeartDisease(center, train=True, data_path=heart_dir).X
    test = heart.FedHeartDisease(center, train=False, data_path=heart_dir).X
    mean, std = raw_train.mean(0), raw_train.std(0)
    torch.testing.assert_close(test, (raw_test - mean) / (std + 1e-9))
    varying = std > 0  # Switzerland's cholesterol is constant (all 0): it stays 0, as in FLamby
    torch.testing.assert_close(train.mean(0), torch.zeros(13), atol=1e-5, rtol=0)
    torch.testing.assert_close(train.std(0)[varying], torch.ones(int(varying.sum())), atol=1e-5, rtol=0)


def test_pooled_uses_pooled_train_stats(heart_dir):
    pooled = heart.FedHeartDisease(train=True, pooled=True, data_path=heart_dir)
    assert len(pooled) == sum(TRAIN_SIZES)
    assert len(heart.FedHeartDisease(train=False, pooled=True, data_path=heart_dir)) == sum(TEST_SIZES)
    torch.testing.assert_close(pooled.X.mean(0), torch.zeros(13), atol=1e-5, rtol=0)
    torch.testing.assert_close(pooled.X.std(0), torch.ones(13), atol=1e-5, rtol=0)


def test_get_batch_matches_items(heart_dir):
    ds = heart.FedHeartDisease(1, data_path=heart_dir)
    idx = torch.tensor([5, 0, 17])
    X, y = ds.get_batch(idx)
    torch.testing.assert_close(X, torch.stack([ds[i][0] for i in idx.tolist()]))
    torch.testing.assert_close(y, torch.stack([ds[i][1] for i in idx.tolist()]))


def test_baseline_loss_and_metric():
    model = heart.Baseline()
    out = model(torch.zeros(3, 13))
    assert out.shape == (3, 1) and ((out > 0) & (out < 1)).all()
    assert sum(p.numel() for p in model.parameters()) == 14
    assert isinstance(heart.BaselineLoss(), torch.nn.BCELoss)
    y_true = np.array([[1.0], [0.0], [1.0], [0.0]])
    assert heart.metric(y_true, np.array([[0.9], [0.2], [0.4], [0.6]])) == 0.5


def test_bad_center_is_refused(heart_dir):
    with pytest.raises(ValueError, match="center must be in 0..3"):
        heart.FedHeartDisease(4, data_path=heart_dir)
