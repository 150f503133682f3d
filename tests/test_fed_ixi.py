"""Fed-IXI's model, loss and metric against FLamby's definitions and hand computations (work in progress:
the dataset loader follows)."""

import numpy as np
import pytest
import torch

from flamby_flare.datasets.fed_ixi.loss import BaselineLoss
from flamby_flare.datasets.fed_ixi.metric import metric
from flamby_flare.datasets.fed_ixi.model import Baseline


def test_unet_has_flambys_shape():
    model = Baseline()
    assert sum(p.numel() for p in model.parameters()) == 246_156  # FLamby's Fed-IXI U-Net
    assert sum(isinstance(m, torch.nn.BatchNorm3d) for m in model.modules()) == 9  # all convolutions but the first
    with torch.no_grad():
        out = model(torch.randn(2, 1, 48, 60, 48))
    assert out.shape == (2, 2, 48, 60, 48)
    assert torch.allclose(out.sum(1), torch.ones(2, 48, 60, 48), atol=1e-6)  # softmax over the two channels


def test_dice_loss_by_hand():
    p = torch.zeros(1, 2, 2, 1, 1)
    g = torch.zeros(1, 2, 2, 1, 1)
    p[0, 0, :, 0, 0] = torch.tensor([0.8, 0.2])  # channel 0: TP 0.8, FP 0.2, FN 0.2
    g[0, 0, :, 0, 0] = torch.tensor([1.0, 0.0])
    p[0, 1, :, 0, 0] = torch.tensor([0.2, 0.8])  # channel 1: TP 0.8, FP 0.2, FN 0.2
    g[0, 1, :, 0, 0] = torch.tensor([0.0, 1.0])
    expected = 1 - 2 * 0.8 / (2 * 0.8 + 0.2 + 0.2)
    assert float(BaselineLoss()(p, g)) == pytest.approx(expected)
    assert float(BaselineLoss()(g, g)) == pytest.approx(0.0, abs=1e-8)


def test_soft_dice_metric_with_and_without_background():
    g = np.zeros((1, 2, 4, 1, 1))
    g[0, 1, :2] = 1  # foreground: 2 voxels
    g[0, 0, 2:] = 1  # background: the other 2
    p = np.zeros_like(g)
    p[0, 1, :3] = 1  # predicts 3 foreground voxels
    p[0, 0, 3:] = 1
    foreground = 2 / (0.5 * (2 + 3))  # intersection 2, half the sum of sizes 2.5
    background = 1 / (0.5 * (2 + 1))
    assert metric(g, p) == pytest.approx((foreground + background) / 2, rel=1e-6)
    empty = np.zeros((1, 2, 3, 1, 1))
    assert metric(empty, empty) == 1.0  # nothing to segment and nothing predicted
