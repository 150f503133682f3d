"""Fed-ISIC2019's model, loss and metric against FLamby's definitions and hand computations (work in progress)."""

import math

import numpy as np
import pytest
import torch

from flamby_flare.datasets.fed_isic2019.loss import CLASS_WEIGHTS, BaselineLoss
from flamby_flare.datasets.fed_isic2019.metric import metric
from flamby_flare.datasets.fed_isic2019.model import Baseline


def test_efficientnet_b0_with_an_8_class_head():
    model = Baseline()
    assert sum(p.numel() for p in model.parameters()) == 4_017_796  # FLamby's EfficientNet-b0 + Linear(1280, 8)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 200, 200)).shape == (2, 8)


def test_pretrained_weights_load_from_a_local_file_only(tmp_path):
    import timm

    source = timm.create_model("efficientnet_b0", pretrained=False)  # stands for the ImageNet file
    torch.save(source.state_dict(), tmp_path / "b0.pt")
    model = Baseline(tmp_path / "b0.pt")
    assert torch.equal(model.net.conv_stem.weight, source.conv_stem.weight)
    torch.save({"x": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="is not an efficientnet_b0 state dict"):
        Baseline(tmp_path / "bad.pt")


def test_class_weights_are_pooled_train_size_over_class_counts():
    counts = np.array([3332, 9084, 2649, 712, 1950, 184, 201, 485])
    np.testing.assert_allclose(CLASS_WEIGHTS, counts.sum() / counts, atol=1e-4)


def test_focal_loss_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0, 0, 0, 0, 0, 0], [0.0, 0, 0, 0, 0, 1.0, 0, 0]])
    target = torch.tensor([0, 5])
    expected = []
    for row, y in zip(logits, target):
        p = math.exp(row[y]) / sum(math.exp(v) for v in row)
        expected.append(-CLASS_WEIGHTS[y] * (1 - p) ** 2 * math.log(p))
    assert float(BaselineLoss()(logits, target)) == pytest.approx(sum(expected) / 2, rel=1e-5)


def test_balanced_accuracy():
    y = np.array([0, 0, 0, 1])
    logits = np.eye(8)[[0, 0, 1, 1]]  # class 0: 2/3 right, class 1: 1/1
    assert metric(y, logits) == pytest.approx((2 / 3 + 1) / 2)
