"""Fed-Camelyon16: tissue detection and tiling on synthetic pyramidal TIFF slides (written with tifffile),
features, FLamby's slide and tile order, the attention masking, loss and AUC."""

import random

import numpy as np
import pandas as pd
import pytest
import torch

from flamby_flare.datasets.fed_camelyon16 import Baseline, BaselineLoss, FedCamelyon16, metric
from flamby_flare.datasets.fed_camelyon16.common import FLAMBY_SIZES
from flamby_flare.datasets.fed_camelyon16.tiling import feature_extractor, otsu_threshold, process_slide
from tests.synthetic_images import CAMELYON_TISSUE_EVERY, write_slide


def test_flambys_hospitals_and_split(mirror):
    """hospital_corrected is FLamby's center: RUMC = normal_001-100 and tumor_001-070 among the train slides."""
    meta = pd.read_csv(mirror / "fed_camelyon16" / "metadata.csv")
    train = meta[~meta["slide_name"].str.startswith("test")]
    kind, number = train["slide_name"].str.split("_").str[0], train["slide_name"].str[-7:-4].astype(int)
    rumc = ((kind == "normal") & (number <= 100)) | ((kind == "tumor") & (number <= 70))
    assert (train["hospital_corrected"] == (~rumc).astype(float)).all()
    split = np.where(meta["slide_name"].str.startswith("test"), "test", "train")
    sizes = pd.crosstab(meta["hospital_corrected"], split)
    assert (tuple(sizes["train"]), tuple(sizes["test"])) == (FLAMBY_SIZES["train"], FLAMBY_SIZES["test"])


def test_otsu_threshold_separates_two_modes():
    gray = np.concatenate([np.full(300, 60), np.full(700, 210)])
    assert 60 <= otsu_threshold(gray) < 210


@pytest.mark.parametrize(
    "tissue, expected",
    [
        ((448, 0, 896, 448), [(448, 0)]),  # one level-1 tile: column 1, row 0
        ((0, 448, 896, 896), [(0, 448), (448, 448)]),  # the second row
        ((0, 0, 200, 200), []),  # under 60 % of any tile
    ],
)
def test_tissue_tiles_and_features(tmp_path, tissue, expected):
    write_slide(tmp_path / "slide.tif", tissue=tissue)
    coords, features = process_slide(tmp_path / "slide.tif", feature_extractor(), torch.device("cpu"))
    assert [tuple(c) for c in coords] == expected
    assert features.shape == (len(expected), 2048) and features.dtype == np.float32
    assert (features >= 0).all()  # after ReLU and average pooling: padding rows of zeros stand out


def test_empty_slide_has_no_tile(tmp_path):
    write_slide(tmp_path / "glass.tif", tissue=None)
    coords, features = process_slide(tmp_path / "glass.tif", feature_extractor(), torch.device("cpu"))
    assert coords.shape == (0, 2) and features.shape == (0, 2048)


def test_cache_order_padding_and_resume(image_data_root, monkeypatch):
    folder = image_data_root("fed_camelyon16") / "fed_camelyon16"
    slides = pd.read_csv(folder / "preprocessed" / "slides.csv")
    assert len(slides) == 399 and slides["tiles"].tolist() == [int(k % CAMELYON_TISSUE_EVERY == 0) for k in range(399)]
    assert (folder / "preprocessed" / "tiles" / "normal_001.tif.csv").is_file()
    train = FedCamelyon16(1, True, data_path=folder, max_tiles=4)
    order = sorted(slides["slide"])
    random.seed(0)
    random.shuffle(order)  # FLamby's order
    assert train.slides == [
        s for s in order if s in set(slides[(slides["center"] == 1) & (slides["split"] == "train")]["slide"])
    ]
    tiles = dict(zip(slides["slide"], slides["tiles"]))
    picked = [next(i for i, s in enumerate(train.slides) if tiles[s] == n) for n in (1, 0)]  # tissue, then glass
    X, y = train.get_batch(torch.tensor(picked))
    assert X.shape == (2, 4, 2048) and y.shape == (2, 1)
    assert (X[0, 0].abs().sum() > 0) and (X[0, 1:] == 0).all()  # one tile, then zero padding
    assert (X[1] == 0).all()  # a slide without tissue: all padding
    labels = dict(zip(slides["slide"], slides["label"]))
    assert y[:, 0].tolist() == [float(labels[train.slides[i]]) for i in picked]

    import importlib

    pre = importlib.import_module("flamby_flare.datasets.fed_camelyon16.preprocess")  # the module, not the function

    def fail(*args, **kwargs):
        raise AssertionError("a finished slide was processed again")

    monkeypatch.setattr(pre, "process_slide", fail)
    pre.preprocess(folder, log=lambda _: None)  # every slide is done: resumes without work


def test_flambys_tile_permutation(tmp_path):
    features = np.arange(5 * 2048, dtype=np.float32).reshape(5, 2048) + 1
    ds = FedCamelyon16.__new__(FedCamelyon16)
    (tmp_path / "features").mkdir()
    np.save(tmp_path / "features" / "s.npy", features)
    ds.cache, ds.slides, ds.max_tiles = tmp_path, ["s"], 3
    perm = np.random.default_rng(42).permutation(5)
    np.testing.assert_array_equal(ds.features(0), features[perm[:3]])  # truncated in FLamby's order


def test_attention_ignores_padding_unless_reproducing_flamby():
    torch.manual_seed(0)
    model = Baseline()
    tiles = torch.rand(1, 3, 2048)
    padded = torch.cat([tiles, torch.zeros(1, 5, 2048)], dim=1)
    assert torch.allclose(model(tiles), model(padded), atol=1e-6)  # the padding changes nothing
    assert model.attention(padded)[0, 3:].abs().sum() == 0
    flamby = Baseline(mask_padding=False)
    flamby.load_state_dict(model.state_dict())
    assert not torch.allclose(flamby(tiles), flamby(padded))  # FLamby: zero rows take attention
    assert torch.isfinite(model(torch.zeros(1, 4, 2048))).all()  # a slide without tissue still has a prediction
    assert sum(p.numel() for p in model.parameters()) == 320_258  # FLamby's DeepMIL


def test_loss_and_auc_by_hand():
    logits, y = torch.tensor([[2.0], [-1.0]]), torch.tensor([[1.0], [0.0]])
    expected = -(np.log(1 / (1 + np.exp(-2.0))) + np.log(1 - 1 / (1 + np.exp(1.0)))) / 2
    assert float(BaselineLoss()(logits, y)) == pytest.approx(expected, rel=1e-6)
    assert metric(np.array([[0], [0], [1], [1]]), np.array([[0.1], [0.4], [0.35], [0.8]])) == pytest.approx(0.75)
    assert np.isnan(metric(np.array([[1], [1]]), np.array([[0.2], [0.3]])))  # one class only: NaN, as FLamby
