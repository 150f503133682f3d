"""Fed-KITS19: FLamby's silos from the real site files; preprocessing (resampling, CT normalization), patch
sampling, loss and metric against hand computations, on synthetic KiTS19 cases in the real NIfTI layout
(``tests/synthetic_images.py``)."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from flamby_flare.datasets.fed_kits19 import SOURCE, BaselineLoss, FedKits19, metric
from flamby_flare.datasets.fed_kits19.common import FLAMBY_SIZES, SPACING
from flamby_flare.datasets.fed_kits19.dataset import crop, patch_corner
from flamby_flare.datasets.fed_kits19.preprocess import intensity_stats, normalize
from flamby_flare.datasets.volumes import resample
from flamby_flare.download import download

PATCH = (32, 64, 64)


def test_flambys_silos_follow_from_the_anonymized_sites(mirror):
    """Sites with >= 10 of the first 210 cases become silos 0..5 in site-id order; within a silo the first
    int(0.8 n) cases are train: exactly FLamby's thresholded_sites.csv and sizes."""
    anony = pd.read_csv(mirror / "fed_kits19" / "anony_sites.csv")
    anony = anony[anony["case"].str.slice(5).astype(int) < 210]
    counts = anony["site_id"].value_counts()
    kept = sorted(counts[counts >= 10].index)
    assert kept == [7, 13, 14, 55, 57, 67]
    rows = []
    for silo, site in enumerate(kept):
        cases = sorted(anony[anony["site_id"] == site]["case"])
        n_train = int(0.8 * len(cases))
        rows += [(case, silo, "train" if k < n_train else "test") for k, case in enumerate(cases)]
    flamby = pd.read_csv(mirror / "fed_kits19" / "thresholded_sites.csv")
    assert sorted(rows) == sorted(zip(flamby["case_ids"], flamby["site_ids"], flamby["train_test_split"]))
    sizes = flamby.groupby(["site_ids", "train_test_split"]).size()
    assert tuple(sizes[(s, "train")] for s in range(6)) == FLAMBY_SIZES["train"]
    assert tuple(sizes[(s, "test")] for s in range(6)) == FLAMBY_SIZES["test"]


def test_resampling_to_flambys_spacing():
    image = np.random.default_rng(0).normal(size=(10, 20, 30)).astype(np.float32)
    seg = np.zeros((10, 20, 30), np.uint8)
    seg[3:7, 5:15, 10:20] = 1
    seg[4:6, 8:12, 12:16] = 2
    x, y = resample(image, seg, zooms=(5.8, 2.9, 0.725), spacing=SPACING)  # 2x, 2x and 0.5x the target voxel sizes
    assert x.shape == y.shape == (20, 40, 15) and x.dtype == np.float32 and y.dtype == np.uint8
    assert set(np.unique(y).tolist()) == {0, 1, 2}  # nearest neighbour: labels stay labels
    assert int((y == 1).sum()) == 2 * 2 * int((seg == 1).sum()) // 2  # 2 x 2 x 1/2 the voxels, ties included


def test_labels_are_monais_nearest_neighbours_and_the_same_under_any_cpu_kernel():
    """Off ties, the labels are MONAI's nearest-neighbour resampling; at ties (halving an axis puts every sample
    half-way) they do not depend on the CPU's kernels, where torch's sampler did (608 vs 736 voxels of one label)."""
    import subprocess
    import sys

    from monai.data import MetaTensor
    from monai.transforms import Spacing

    rng = np.random.default_rng(1)
    for _ in range(10):
        shape = tuple(int(n) for n in rng.integers(5, 30, 3))
        zooms = tuple(float(z) for z in rng.uniform(0.4, 3.0, 3))
        labels = rng.integers(0, 3, shape).astype(np.uint8)
        _, ours = resample(np.zeros(shape, np.float32), labels, zooms, SPACING)
        monai = Spacing(pixdim=SPACING, mode="nearest", scale_extent=True)(
            MetaTensor(labels[None].astype(np.float32), affine=np.diag([*zooms, 1.0]))
        )
        np.testing.assert_array_equal(ours, np.rint(np.asarray(monai[0])).astype(np.uint8))
    script = (
        "import numpy as np, sys; from flamby_flare.datasets.volumes import resample; "
        "seg = np.zeros((10, 20, 30), np.uint8); seg[3:7, 5:15, 10:20] = 1; "
        "_, y = resample(np.zeros(seg.shape, np.float32), seg, (5.8, 2.9, 0.725), (2.9, 1.45, 1.45)); "
        "sys.stdout.write(str(int(y.sum())))"
    )
    other = subprocess.run(  # this process runs AVX2's kernels (tests/golden.py), this one the portable ones
        [sys.executable, "-c", script],
        env={**os.environ, "ATEN_CPU_CAPABILITY": "default"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    seg = np.zeros((10, 20, 30), np.uint8)
    seg[3:7, 5:15, 10:20] = 1
    _, here = resample(np.zeros(seg.shape, np.float32), seg, (5.8, 2.9, 0.725), SPACING)
    assert other == str(int(here.sum())) == "800"  # 2 x 2 x 1/2 of the 400 labelled voxels


def test_ct_normalization_by_hand():
    values = np.arange(1, 1001, dtype=np.float32)
    stats = intensity_stats([values[:500], values[500:]])
    assert stats["percentile_00_5"] == pytest.approx(np.percentile(values, 0.5))
    assert stats["percentile_99_5"] == pytest.approx(np.percentile(values, 99.5))
    assert stats["mean"] == pytest.approx(500.5) and stats["sd"] == pytest.approx(values.std())
    out = normalize(np.array([-5000.0, 500.5, 5000.0]), stats)
    expected = (np.array([stats["percentile_00_5"], 500.5, stats["percentile_99_5"]]) - 500.5) / values.std()
    np.testing.assert_allclose(out, expected, rtol=1e-5)


def test_cache_spacing_normalization_and_splits(image_data_root):
    folder = image_data_root("fed_kits19") / "fed_kits19"
    record = json.loads((folder / "preprocessed" / ".preprocessed.json").read_text())
    assert record["cases"] == 96 and record["spacing"] == [2.9, 1.45, 1.45]
    assert record["sizes"] == {
        n: f"{a}/{b}" for n, a, b in zip(record["sizes"], FLAMBY_SIZES["train"], FLAMBY_SIZES["test"])
    }
    cases = pd.read_csv(folder / "preprocessed" / "cases.csv")
    assert set(zip(cases["depth"], cases["height"], cases["width"])) == {(24, 80, 80)}  # 12x40x40 at 5.8x2.9x2.9 mm
    stats = record["intensity"]
    assert 100 < stats["mean"] < 160  # the synthetic kidney (150 HU) and tumor (60 HU): foreground only
    image = np.load(folder / "preprocessed" / f"{cases['case'][0]}_image.npy")
    high = (stats["percentile_99_5"] - stats["mean"]) / stats["sd"]
    low = (stats["percentile_00_5"] - stats["mean"]) / stats["sd"]
    assert image.max() <= high + 1e-4 and image.min() >= low - 1e-4
    for silo in range(6):
        assert (
            len(FedKits19(silo, True, data_path=folder, patch_size=PATCH)),
            len(FedKits19(silo, False, data_path=folder, patch_size=PATCH)),
        ) == (FLAMBY_SIZES["train"][silo], FLAMBY_SIZES["test"][silo])


def test_patches_oversample_the_foreground(image_data_root):
    train = FedKits19(5, True, data_path=image_data_root("fed_kits19") / "fed_kits19", patch_size=PATCH, augment=False)
    foreground = {0: [], 1: []}
    for seed in range(12):
        X, y = train.get_batch(torch.tensor([seed % len(train), (seed + 1) % len(train)]), seed=seed)
        assert X.shape == (2, 1, *PATCH) and y.shape == (2, 1, *PATCH) and y.dtype == torch.int64
        for j in (0, 1):
            foreground[j].append(bool((y[j] > 0).any()))
    assert all(foreground[1])  # every second patch is centered on a kidney or tumor voxel
    a = FedKits19(5, True, data_path=image_data_root("fed_kits19") / "fed_kits19", patch_size=PATCH)
    batch = a.get_batch(torch.tensor([0, 1]), seed=4)
    assert all(torch.equal(u, v) for u, v in zip(batch, a.get_batch(torch.tensor([0, 1]), seed=4)))
    test = FedKits19(5, False, data_path=image_data_root("fed_kits19") / "fed_kits19", patch_size=PATCH)
    assert torch.equal(test.get_batch(torch.tensor([1]), seed=1)[0], test.get_batch(torch.tensor([1]), seed=2)[0])
    folder = image_data_root("fed_kits19") / "fed_kits19"
    assert FedKits19(0, data_path=folder, patch_size=[16, 32, 64]).patch_size == (16, 32, 64)  # the smallest


@pytest.mark.parametrize(
    "patch",
    [
        (16, 32, 32),
        (16, 32, 48),
        (-16, -32, 64),
        (16, 32),
        ["16", "32", "64"],
        16,
        None,
        (16.0, 32, 64),
        (True, 32, 64),
    ],
)  # a 1-voxel bottom layer, not multiples, ...
def test_a_patch_the_u_net_cannot_take_is_refused_in_one_line_naming_it(patch, tmp_path):
    with pytest.raises(ValueError, match=r"^patch_size must be positive multiples of \(16, 32, 32\) leaving[^\n]*$"):
        FedKits19(0, data_path=tmp_path, patch_size=patch)  # before any file is opened


def test_crop_pads_outside_the_volume():
    volume = np.arange(4 * 4 * 4).reshape(4, 4, 4)
    out = crop(volume, np.array([-2, 1, 2]), (4, 4, 4))
    assert out.shape == (4, 4, 4) and (out[:2] == 0).all() and (out[:, 3:] == 0).all() and (out[:, :, 2:] == 0).all()
    np.testing.assert_array_equal(out[2:, :3, :2], volume[:2, 1:4, 2:4])
    corner = patch_corner((10, 10, 10), (4, 4, 4), None, np.random.default_rng(0))
    assert ((corner >= 0) & (corner <= 6)).all()


def test_foreground_patches_are_centered_on_a_foreground_voxel():
    seg = np.zeros((40, 40, 40), np.uint8)
    seg[30:33, 5:8, 20:22] = 1
    seg[31, 6, 21] = 2
    rng = np.random.default_rng(0)
    hits = {True: 0, False: 0}
    for _ in range(200):
        for forced in (True, False):
            corner = patch_corner(seg.shape, (8, 8, 8), seg if forced else None, rng)
            hits[forced] += bool(crop(seg, corner, (8, 8, 8)).any())
            if forced:
                assert seg[tuple(corner + 4)] > 0  # the patch center is a foreground voxel
    assert hits[True] == 200 and hits[False] < 40  # a random 8^3 patch rarely meets an 18-voxel lesion


def test_dice_ce_loss_by_hand():
    logits = torch.tensor([[[0.0, 2.0], [1.0, 0.0], [0.0, 1.0]]]).view(1, 3, 2, 1, 1)
    target = torch.tensor([[1, 2]]).view(1, 1, 2, 1, 1)
    p = torch.softmax(logits, dim=1)[0, :, :, 0, 0]  # (class, voxel)
    ce = -(torch.log(p[1, 0]) + torch.log(p[2, 1])) / 2
    onehot = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    dice = [(2 * (p[c] * onehot[c]).sum() + 1e-5) / (p[c].sum() + onehot[c].sum() + 1e-5) for c in (1, 2)]
    expected = ce + 1 - (dice[0] + dice[1]) / 2  # nnU-Net: CE + batch Dice of the foreground classes
    assert float(BaselineLoss()(logits, target)) == pytest.approx(float(expected), rel=1e-5)


def test_kidney_and_tumor_dice_metric_by_hand():
    y = np.zeros((2, 1, 4, 1, 1), np.int64)
    y[0, 0, :2] = 1  # kidney
    y[0, 0, 2] = 2  # tumor
    logits = np.zeros((2, 3, 4, 1, 1))
    logits[0, 1, :3] = 1  # predicts kidney on voxels 0-2 (voxel 2 is tumor)
    logits[0, 0, 3] = logits[1, 0] = 1  # background elsewhere
    kidney = 2 * 3 / (3 + 3 + 1e-5)  # pred > 0 on 3 voxels, truth > 0 on 3
    tumor = 0.0  # no tumor predicted
    assert metric(y, logits) == pytest.approx((kidney + tumor) / 2)


def test_a_silo_downloads_only_its_own_cases(tmp_path, image_mirror):
    folder = download(SOURCE, data_root=tmp_path, mirror=image_mirror("fed_kits19"), centers=[2], log=lambda _: None)
    cases = sorted(p.name for p in folder.glob("case_*"))
    sites = pd.read_csv(image_mirror("fed_kits19") / "fed_kits19" / "thresholded_sites.csv")
    assert cases == sorted(sites[sites["site_ids"] == 2]["case_ids"]) and len(cases) == 12
