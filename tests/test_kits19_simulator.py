"""Fed-KITS19 end to end in NVFlare's simulator, on CPU, from synthetic raw files that ``flamby-flare
preprocess`` turned into its cache (``conftest.image_data_root``); a module of its own (FLamby's nnU-Net is
235 MB on the wire: the longest image run) so that pytest-xdist runs it beside the other image datasets."""

import pytest

from tests.simulator import synthetic_image_run as _summary

pytestmark = pytest.mark.simulator


def test_fed_kits19_one_round(tmp_path, image_data_root):
    summary = _summary(
        tmp_path,
        "fed_kits19",
        3,
        image_data_root("fed_kits19"),
        num_updates=1,
        dataset_args={"patch_size": [16, 64, 64]},
    )
    assert summary["metric_name"] == "dice" and summary["batch_size"] == 2
    assert summary["n_test"] == {f"site-{i + 1}": n for i, n in enumerate([3, 3, 3, 3, 4, 6])}
    assert all(0.0 <= v <= 1.0 for v in summary["per_site"].values())
    assert summary["history"][0]["train_loss"] > 0
