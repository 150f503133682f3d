"""Fed-IXI: model, loss and metric against FLamby's definitions and hand computations; download, preprocessing
and loading on a synthetic IXI-Tiny archive in its real layout (``tests/synthetic_images.py``)."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from flamby_flare.datasets.fed_ixi import CENTER_NAMES, SOURCE, FedIXITiny, preprocess
from flamby_flare.datasets.fed_ixi.common import FLAMBY_SIZES
from flamby_flare.datasets.fed_ixi.loss import BaselineLoss
from flamby_flare.datasets.fed_ixi.metric import metric
from flamby_flare.datasets.fed_ixi.model import Baseline
from flamby_flare.download import COMPLETE_MARKER, download, sha256sum
from flamby_flare.errors import CorruptedDatasetError, DatasetNotFoundError, DownloadError
from tests.synthetic_images import ixi_subjects, write_ixi_archive


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


def test_flambys_split_file_gives_flambys_center_sizes(mirror):
    """The real metadata_tiny.csv (its Manufacturer column is the center) holds FLamby's per-center split."""
    meta = pd.read_csv(mirror / "fed_ixi" / "metadata_tiny.csv")
    sizes = meta.groupby(["Manufacturer", "Split"]).size()
    assert tuple(sizes[(c, "train")] for c in range(3)) == FLAMBY_SIZES["train"] == (249, 145, 59)
    assert tuple(sizes[(c, "test")] for c in range(3)) == FLAMBY_SIZES["test"] == (62, 36, 15)


def test_preprocessed_cache_follows_flambys_split_and_transforms(image_data_root, image_mirror, mirror):
    folder = image_data_root("fed_ixi") / "fed_ixi"
    subjects = ixi_subjects(mirror)
    record = json.loads((folder / "preprocessed" / ".preprocessed.json").read_text())
    assert record["subjects"] == 9 and record["sizes"] == {"Guys": "2/1", "HH": "2/1", "IOP": "2/1"}
    assert record["raw"]["7kd5wj7v7p-3.zip"] == sha256sum(image_mirror("fed_ixi") / "fed_ixi" / "7kd5wj7v7p-3.zip")
    for center in range(3):
        train, test = (FedIXITiny(center, t, data_path=folder) for t in (True, False))
        assert (len(train), len(test)) == (2, 1)
        expected = sorted(
            pid for pid, (name, split) in subjects.items() if name == CENTER_NAMES[center] and split == "train"
        )
        assert sorted(pd.read_csv(folder / "preprocessed" / "subjects.csv").iloc[train.rows]["patient_id"]) == expected
    assert len(FedIXITiny(train=False, pooled=True, data_path=folder)) == 3
    X, y = FedIXITiny(0, True, data_path=folder)[0]
    assert X.shape == (1, 48, 60, 48) and y.shape == (2, 48, 60, 48) and X.dtype == y.dtype == torch.float32
    assert abs(float(X.mean())) < 1e-4 and abs(float(X.std()) - 1) < 1e-2  # z-scored over the volume
    assert torch.equal(y.sum(0), torch.ones(48, 60, 48)) and set(y.unique().tolist()) == {0.0, 1.0}
    assert 0.05 < float(y[1].mean()) < 0.5  # the ellipsoid is foreground
    assert float(X[0][y[1] == 1].mean()) > float(X[0][y[0] == 1].mean()) + 1  # and bright in the image
    batch, _ = FedIXITiny(0, True, data_path=folder).get_batch(torch.tensor([1, 0]))
    assert torch.equal(batch[1], X)  # batches come back in the asked order


def test_archive_without_published_checksum_is_verified_then_pinned(tmp_path, image_mirror, mirror):
    """No checksum is published for IXI-Tiny: the download checks its layout and records its hash, which a
    later change to the file then violates; an archive without IXI-Tiny's layout is not kept."""
    folder = download(SOURCE, data_root=tmp_path / "data", mirror=image_mirror("fed_ixi"), log=lambda _: None)
    record = json.loads((folder / COMPLETE_MARKER).read_text())
    assert record["files"]["7kd5wj7v7p-3.zip"] == sha256sum(folder / "7kd5wj7v7p-3.zip")
    with open(folder / "7kd5wj7v7p-3.zip", "ab") as f:
        f.write(b"tampered")
    with pytest.raises(CorruptedDatasetError, match="7kd5wj7v7p-3.zip is corrupted.*flamby-flare download fed_ixi"):
        FedIXITiny(0, data_path=folder)
    bad = tmp_path / "bad_mirror" / "fed_ixi"
    bad.mkdir(parents=True)
    shutil.copyfile(mirror / "fed_ixi" / "metadata_tiny.csv", bad / "metadata_tiny.csv")
    subjects = {pid: v for pid, v in ixi_subjects(mirror).items() if v[0] != "IOP"}
    write_ixi_archive(bad / "7kd5wj7v7p-3.zip", subjects, wrap=False)
    with pytest.raises(DownloadError, match="not a valid Fed-IXI file: expected subjects of Guys, HH, IOP"):
        download(SOURCE, data_root=tmp_path / "data2", mirror=bad.parent, log=lambda _: None)
    assert not (tmp_path / "data2" / "fed_ixi" / "7kd5wj7v7p-3.zip").exists()


def test_missing_or_stale_cache_names_the_preprocess_command(tmp_path, image_mirror):
    folder = download(SOURCE, data_root=tmp_path, mirror=image_mirror("fed_ixi"), log=lambda _: None)
    with pytest.raises(DatasetNotFoundError, match="cache .* is missing; run `flamby-flare preprocess fed_ixi`"):
        FedIXITiny(0, data_path=folder)
    preprocess(folder, log=lambda _: None)
    assert len(FedIXITiny(0, data_path=folder)) == 2
    record = folder / "preprocessed" / ".preprocessed.json"
    record.write_text(record.read_text().replace('"version": 1', '"version": 0'))
    with pytest.raises(DatasetNotFoundError, match="older version; run `flamby-flare preprocess fed_ixi`"):
        FedIXITiny(0, data_path=folder)


def test_preprocess_refuses_options_the_dataset_does_not_take(tmp_path, capsys):
    from flamby_flare.cli import main

    assert main(["preprocess", "fed_ixi", "--workers", "2", "--data-root", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == "error: fed_ixi's preprocessing takes no --workers"
    assert not (tmp_path / "fed_ixi").exists()  # refused before anything was downloaded
