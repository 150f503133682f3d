"""``flamby-flare heterogeneity``: FLamby's Figure 1, per-site distributions and the tests of their
differences, on the real tabular data and on every image dataset's synthetic files."""

from __future__ import annotations

import itertools

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from flamby_flare.cli import main


def _read(out, name):
    image = matplotlib.image.imread(out / f"heterogeneity_{name}.png")
    assert image.shape[0] > 250 and image.shape[1] > 500
    return pd.read_csv(out / f"heterogeneity_{name}.csv")


def test_heart_features_and_classes_differ_by_hospital(data_root, tmp_path, capsys):
    from scipy.stats import chi2_contingency

    from flamby_flare.datasets.fed_heart_disease import FedHeartDisease

    assert main(["heterogeneity", "fed_heart_disease", "--data-root", str(data_root), "--out", str(tmp_path)]) == 0
    assert "Kruskal-Wallis" in capsys.readouterr().out
    table = _read(tmp_path, "fed_heart_disease")
    assert list(table["what"]) == ["age", "trestbps", "chol", "thalach", "oldpeak", "class counts"]
    counts = [
        np.bincount(FedHeartDisease(c, data_path=data_root / "fed_heart_disease").y[:, 0].int().numpy())
        for c in range(4)
    ]
    assert [c.tolist() for c in counts] == [[108, 91], [107, 65], [0, 30], [19, 66]]  # the train sets' classes
    chi2 = chi2_contingency(np.array(counts))
    assert table.iloc[-1]["statistic"] == pytest.approx(chi2.statistic) and table.iloc[-1]["p_value"] < 1e-10
    assert (table["p_value"] < 0.05).sum() == 5  # trestbps alone is alike across hospitals


def test_tcga_survival_differs_little_by_region(data_root, tmp_path):
    assert (
        main(["heterogeneity", "--dataset", "fed_tcga_brca", "--data-root", str(data_root), "--out", str(tmp_path)])
        == 0
    )
    table = _read(tmp_path, "fed_tcga_brca")
    assert len(table) == 1 + 15 and set(table["test"]) == {"log-rank"}
    assert table.iloc[0]["statistic"] == pytest.approx(6.669, abs=1e-3) and table.iloc[0]["p_value"] == pytest.approx(
        0.246, abs=1e-3
    )
    assert table.iloc[1]["sites"] == "site-1 Northeast vs site-2 South"


@pytest.mark.parametrize(
    "name, channels",
    [
        ("fed_ixi", ["intensity"]),
        ("fed_isic2019", ["red", "green", "blue"]),
        ("fed_kits19", ["intensity"]),
        ("fed_lidc_idri", ["intensity"]),
        ("fed_camelyon16", ["intensity"]),
    ],
)
def test_image_intensities_are_compared_site_by_site(name, channels, image_data_root, tmp_path):
    from flamby_flare.datasets import get_constants

    assert (
        main(
            ["heterogeneity", name, "--data-root", str(image_data_root(name)), "--out", str(tmp_path), "--images", "3"]
        )
        == 0
    )
    table = _read(tmp_path, name)
    pairs = list(itertools.combinations(range(get_constants(name).NUM_CLIENTS), 2))
    assert len(table) == len(pairs) * len(channels) and set(table["what"]) == set(channels)
    assert set(table["test"]) == {"Kolmogorov-Smirnov"} and table["statistic"].between(0, 1).all()
    if name == "fed_ixi":  # the same sample every time
        again = tmp_path / "again"
        assert (
            main(
                ["heterogeneity", name, "--data-root", str(image_data_root(name)), "--out", str(again), "--images", "3"]
            )
            == 0
        )
        assert _read(again, name).equals(table)


def test_a_missing_dataset_and_a_bad_sample_are_named(tmp_path, capsys):
    assert main(["heterogeneity", "fed_heart_disease", "--data-root", str(tmp_path), "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith("error: Fed-Heart-Disease not found:")
    assert main(["heterogeneity", "fed_ixi", "--images", "0", "--out", str(tmp_path)]) == 1
    assert capsys.readouterr().err == "error: --images must be an integer >= 1, got 0\n"
