"""Fed-LIDC-IDRI: DICOM reading, LIDC XML contours rasterized against known shapes, resampling, FLamby's
crop/normalization/patches, loss and metric against hand computations, on synthetic series in the real formats
(a pydicom series and an XML in LIDC's schema, ``tests/synthetic_images.py``)."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from flamby_flare.datasets.fed_lidc_idri import BaselineLoss, FedLidcIdri, metric
from flamby_flare.datasets.fed_lidc_idri.common import FLAMBY_SIZES
from flamby_flare.datasets.fed_lidc_idri.convert import (
    Contour,
    Reading,
    consensus_mask,
    parse_annotations,
    rasterize,
    read_series,
)
from flamby_flare.datasets.fed_lidc_idri.dataset import all_patches, clip_norm, crop_or_pad, training_centers
from flamby_flare.datasets.fed_lidc_idri.preprocess import convert_series
from tests.synthetic_images import lidc_xml, write_dicom_series

UID = "1.2.826.0.1.3680043.8.498.1"


@pytest.fixture
def series(tmp_path):
    hu = np.arange(4 * 12 * 10, dtype=np.float32).reshape(4, 12, 10) - 1100  # includes values below -1024
    sops = write_dicom_series(tmp_path / "s.zip", UID, hu, spacing=(2.5, 0.7, 0.8), seed=3)
    return tmp_path / "s.zip", hu, sops


def test_flambys_metadata_sizes(mirror):
    meta = pd.read_csv(mirror / "fed_lidc_idri" / "metadata.csv")
    sizes = meta.groupby(["Manufacturer", "Split"]).size()
    listed = {
        "train": tuple(sizes[(c, "train")] for c in range(4)),
        "test": tuple(sizes[(c, "test")] for c in range(4)),
    }
    assert listed == {"train": (536, 59, 164, 55), "test": (134, 15, 41, 14)}
    # FLamby's published sizes: the same less the 9 GE scans its conversion loses
    assert np.subtract(listed["train"], FLAMBY_SIZES["train"]).tolist() == [6, 0, 0, 0]
    assert np.subtract(listed["test"], FLAMBY_SIZES["test"]).tolist() == [3, 0, 0, 0]


def test_dicom_series_is_ordered_by_position_in_hounsfield_units(series):
    path, hu, sops = series
    s = read_series(path)  # the files were written in shuffled order
    assert s.uid == UID and s.spacing == pytest.approx((2.5, 0.7, 0.8)) and s.sop_uids == sops
    np.testing.assert_array_equal(s.volume, np.maximum(hu, -1024).astype(np.int16))


def test_flambys_intensity_correction_and_missing_slices(tmp_path, series):
    """A scan stored unsigned without its intercept (mean above -50 HU) is shifted by -1024 as FLamby does; a
    series with a missing slice is refused, as FLamby leaves such scans out."""
    import zipfile

    from flamby_flare.datasets.fed_lidc_idri.convert import corrected_intensity

    raw = np.array([[[0.0, 1000.0], [2000.0, 40.0]]])
    np.testing.assert_array_equal(corrected_intensity(raw), raw - 1024)  # no value below -1: unsigned
    shifted = np.array([[[-1100.0, 500.0], [900.0, 40.0]]])  # mean 85 HU: no plausible CT
    np.testing.assert_array_equal(corrected_intensity(shifted), np.maximum(shifted.clip(-1024) - 1024, -1024))
    plain = np.array([[[-1100.0, -1000.0], [-900.0, 40.0]]])
    np.testing.assert_array_equal(corrected_intensity(plain), plain.clip(-1024))
    path, _, _ = series
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(tmp_path / "gap.zip", "w") as gap:
        for item in source.infolist():
            if not item.filename.endswith("1-003.dcm"):  # the third of four slices
                gap.writestr(item, source.read(item))
    with pytest.raises(ValueError, match="missing slices: slice steps from 2.5 to 5 mm"):
        read_series(tmp_path / "gap.zip")


def test_contours_are_rasterized_with_their_boundary_and_holes(series):
    path, _, sops = series
    s = read_series(path)
    square = [(2, 3), (6, 3), (6, 7), (2, 7)]  # columns 2-6, rows 3-7: 25 pixels with the boundary
    mask = rasterize(s, [Contour(sops[1], -97.5, True, square)])
    assert mask.sum() == 25 and mask[1, 3:8, 2:7].all()
    hole = [(4, 5), (4, 5)]  # a single pixel removed (inclusion FALSE)
    mask = rasterize(s, [Contour(sops[1], -97.5, True, square), Contour(sops[1], -97.5, False, hole)])
    assert mask.sum() == 24 and mask[1, 5, 4] == 0
    by_z = rasterize(s, [Contour("unknown-sop", -95.1, True, square)])  # nearest slice: z -95 is slice 2
    assert by_z[2].sum() == 25 and by_z.sum() == 25
    readers = [
        Reading([[Contour(sops[0], -100, True, square)]]),
        Reading([[Contour(sops[0], -100, True, [(0, 0), (1, 0), (1, 1), (0, 1)])]]),
    ]
    union = consensus_mask(s, readers)
    assert union[0].sum() == 25 + 4 and union.sum() == 29  # any reader's nodule counts


def test_lidc_xml_is_parsed(series):
    _, _, sops = series
    xml = lidc_xml(UID, [[[(sops[0], -100.0, True, [(1, 1), (3, 1), (3, 3)])]], [[(sops[1], -97.5, False, [(2, 2)])]]])
    uid, readings = parse_annotations(xml.encode())
    assert uid == UID and len(readings) == 2
    ((contour,),) = readings[0].nodules
    assert contour.sop_uid == sops[0] and contour.inclusion and contour.points == [(1, 1), (3, 1), (3, 3)]
    assert not readings[1].nodules[0][0].inclusion


def test_conversion_resamples_to_1_mm(tmp_path, series):
    import nibabel

    path, _, sops = series
    xml = lidc_xml(UID, [[[(sops[2], -95.0, True, [(2, 3), (6, 3), (6, 7), (2, 7)])]]])
    shape = convert_series(path, xml.encode(), tmp_path / "out")
    assert shape == (10, 8, 8)  # 4 x 2.5 mm, 12 x 0.7 = 8.4 and 10 x 0.8 mm
    volume = nibabel.load(tmp_path / "out" / "patient.nii")
    mask = np.asarray(nibabel.load(tmp_path / "out" / "mask_consensus.nii").dataobj)
    assert volume.shape == mask.shape == shape and mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert volume.get_data_dtype() == np.int16 and np.asarray(volume.dataobj).min() >= -1024


def test_crop_pad_and_clip_norm():
    volume = np.arange(2 * 6 * 3).reshape(2, 6, 3) - 5
    out = crop_or_pad(volume, 4)
    assert out.shape == (4, 4, 4)
    np.testing.assert_array_equal(
        out[1:3, :, 0:3], volume[:, 1:5, :]
    )  # padded centered (first half rounded down), cropped centered
    assert (out[0] == volume.min()).all() and (out[:, :, 3] == volume.min()).all()
    np.testing.assert_allclose(clip_norm(np.array([-2000, -1024, 600, 2000, -212])), [0, 0, 1, 1, 0.5])


def test_patches_and_the_nodule_patch(image_data_root):
    train = FedLidcIdri(
        2, True, data_path=image_data_root("fed_lidc_idri") / "fed_lidc_idri", crop_size=32, patch_size=16
    )
    for seed in range(5):
        X, y = train.get_batch(torch.tensor([seed, seed + 1]), seed=seed)
        assert X.shape == y.shape == (4, 1, 16, 16, 16) and X.dtype == torch.float32
        assert 0 <= float(X.min()) and float(X.max()) <= 1
        assert y[1].sum() > 0 and y[3].sum() > 0  # each scan's second patch is on its nodule
    rng = np.random.default_rng(0)
    empty = training_centers(np.zeros((32, 32, 32)), 16, rng)
    assert empty.shape == (2, 3) and ((empty >= 8) & (empty <= 24)).all()  # no nodule: two Gaussian patches
    test = FedLidcIdri(
        2, False, data_path=image_data_root("fed_lidc_idri") / "fed_lidc_idri", crop_size=32, patch_size=16
    )
    X, y = test.get_batch(torch.tensor([0]))
    volume, mask = test.scan(0)
    assert X.shape == (8, 1, 16, 16, 16)
    np.testing.assert_array_equal(X[5, 0].numpy(), volume[16:32, 0:16, 16:32])  # z-major tiling
    np.testing.assert_array_equal(all_patches(mask, 16)[5], mask[16:32, 0:16, 16:32])


def test_loss_by_hand():
    p = torch.tensor([0.8, 0.2, 0.6, 0.1]).view(1, 1, 4, 1, 1)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0]).view(1, 1, 4, 1, 1)
    inter = 0.8 + 0.6
    union = inter + 0.5 * (0.2 + 0.1) + 0.5 * (0.2 + 0.4)
    w = 1 / 0.5 - 1
    xent = -np.mean([w * np.log(0.8), np.log(0.8), w * np.log(0.6), np.log(0.9)])
    assert float(BaselineLoss()(p, y)) == pytest.approx((1 - inter / union) + 0.1 * xent, rel=1e-5)


def test_metric_is_soft_dice_per_scan(image_data_root):
    from flamby_flare.datasets import get_dataset
    from flamby_flare.evaluation import evaluate

    y = np.array([1.0, 1.0, 0.0, 0.0])
    p = np.array([0.5, 1.0, 0.5, 0.0])
    assert metric(y, p) == pytest.approx(1.5 / (0.5 * (2 + 2)))
    assert metric(np.zeros(3), np.zeros(3)) == 1.0
    module = get_dataset("fed_lidc_idri")
    test = FedLidcIdri(
        3, False, data_path=image_data_root("fed_lidc_idri") / "fed_lidc_idri", crop_size=32, patch_size=16
    )

    class Constant(torch.nn.Module):
        def forward(self, x):
            return torch.full_like(x, 0.25)

    by_hand = [
        metric(test.get_batch(torch.tensor([i]))[1].numpy(), np.full((8, 1, 16, 16, 16), 0.25))
        for i in range(len(test))
    ]
    assert evaluate(module, Constant(), test) == pytest.approx(float(np.mean(by_hand)))  # the mean over scans


def test_cache_record(image_data_root):
    record = json.loads(
        (image_data_root("fed_lidc_idri") / "fed_lidc_idri" / "preprocessed" / ".preprocessed.json").read_text()
    )
    assert record["scans"] == 1018 and record["failed"] == {}


def test_the_vnet_is_flambys_and_initialized_as_flambys():
    """FLamby's VNet: 45,596,309 parameters (MONAI's up path gets its convolutions' biases back), Dropout3d 0.25 on
    the deep stages and every skip connection (MONAI: 0.5 on the last two), and each layer initialized as a
    fresh torch layer in FLamby's order, consuming the same draws. Against FLamby's own Baseline in its
    environment, seed 0: the same 170 state-dict values bit for bit, the same output in eval and in train mode
    (the same dropout masks) and the same gradients."""
    from torch import nn

    from flamby_flare.datasets.fed_lidc_idri import Baseline

    torch.manual_seed(3)
    model = Baseline()
    after = torch.rand(1)
    assert sum(p.numel() for p in model.parameters()) == 45_596_309 and len(model.state_dict()) == 170
    dropouts = [m.p for m in model.modules() if isinstance(m, nn.Dropout3d)]
    assert dropouts == [0.25] * 8
    torch.manual_seed(3)
    for m in model.modules():
        if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
            fresh = type(m)(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride, padding=m.padding)
            assert torch.equal(fresh.weight, m.weight) and torch.equal(fresh.bias, m.bias)
    assert torch.equal(torch.rand(1), after)
