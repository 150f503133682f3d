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


def write_ixi_archive(path, subjects, shape=(83, 44, 55), seed=0):
    """A zip laid out as IXI-Tiny (``IXI_sample/IXI<id>-<Center>-<n>/{T1,label}/*.nii.gz``): a bright ellipsoid
    'brain' on noise, and its mask as the label."""
    import gzip
    import zipfile

    import nibabel

    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    with zipfile.ZipFile(path, "w") as archive:
        for pid, center in subjects:
            radius = rng.uniform(0.5, 0.8)
            mask = ((grid ** 2).sum(0) < radius ** 2).astype(np.uint8)
            t1 = (100 * mask + rng.normal(20, 5, shape)).astype(np.float32)
            folder = f"IXI_sample/IXI{pid:03d}-{center}-{1000 + pid}"
            for kind, volume in (("T1", t1), ("label", mask)):
                image = nibabel.Nifti1Image(volume, np.eye(4))
                archive.writestr(f"{folder}/{kind}/IXI{pid:03d}-{center}-{1000 + pid}_image.nii.gz", gzip.compress(image.to_bytes()))


def test_preprocess_and_dataset_follow_flambys_split(tmp_path):
    from flamby_flare.datasets.fed_ixi.dataset import FedIXITiny
    from flamby_flare.datasets.fed_ixi.preprocess import preprocess

    subjects = [(2, "Guys"), (12, "HH"), (13, "HH"), (14, "IOP"), (15, "Guys"), (16, "Guys")]
    write_ixi_archive(tmp_path / "ixi.zip", subjects)
    split = {2: "test", 12: "test", 13: "train", 14: "train", 15: "train", 16: "train"}
    import pandas as pd

    pd.DataFrame({"Patient ID": list(split), "Manufacturer": 0, "Split": list(split.values())}).to_csv(tmp_path / "meta.csv", index=False)
    seen = []
    cache = preprocess(tmp_path / "ixi.zip", tmp_path / "meta.csv", tmp_path / "cache", progress=lambda i, n: seen.append((i, n)))
    assert seen[-1] == (6, 6)
    sizes = {(c, train): len(FedIXITiny(c, train, data_path=cache)) for c in range(3) for train in (True, False)}
    assert sizes == {(0, True): 2, (0, False): 1, (1, True): 1, (1, False): 1, (2, True): 1, (2, False): 0}
    assert len(FedIXITiny(train=True, pooled=True, data_path=cache)) == 4
    X, y = FedIXITiny(0, True, data_path=cache)[0]
    assert X.shape == (1, 48, 60, 48) and y.shape == (2, 48, 60, 48)
    assert abs(float(X.mean())) < 1e-4 and abs(float(X.std()) - 1) < 1e-2  # z-scored over the volume
    assert torch.equal(y.sum(0), torch.ones(48, 60, 48)) and set(y.unique().tolist()) == {0.0, 1.0}
    assert 0.05 < float(y[1].mean()) < 0.5  # the ellipsoid is foreground
    with pytest.raises(FileNotFoundError, match="flamby-flare preprocess fed_ixi"):
        FedIXITiny(0, data_path=tmp_path / "nothing")
