"""The image datasets end to end in NVFlare's simulator, on CPU, from synthetic raw files that ``flamby-flare
preprocess`` turned into their caches (``conftest.image_data_root``); Fed-KITS19: ``tests/test_kits19_simulator.py``."""

import pytest

from flamby_flare.cli import main
from flamby_flare.jobs import write_job
from tests.simulator import run_dir, run_simulator
from tests.simulator import synthetic_image_run as _summary

pytestmark = pytest.mark.simulator


def test_fed_isic2019_one_round(tmp_path, image_data_root):
    summary = _summary(
        tmp_path, "fed_isic2019", 3, image_data_root("fed_isic2019"), num_updates=1, batch_size=3, pretrained=False
    )  # from FLamby's initial model of seed 5 (its ImageNet weights: tests/test_pretrained.py)
    assert summary["metric_name"] == "balanced_accuracy" and summary["pretrained_weights"] is None
    assert summary["n_test"] == {f"site-{i}": 2 for i in range(1, 7)}
    assert all(0.0 <= v <= 1.0 for v in summary["per_site"].values())
    assert summary["history"][0]["train_loss"] > 0


def test_fed_lidc_idri_one_round(tmp_path, image_data_root):
    summary = _summary(
        tmp_path,
        "fed_lidc_idri",
        4,
        image_data_root("fed_lidc_idri"),
        num_updates=1,
        dataset_args={"crop_size": 16, "patch_size": 16},
    )
    assert summary["metric_name"] == "dice" and summary["batch_size"] == 1
    assert summary["n_test"] == {"site-1": 134, "site-2": 15, "site-3": 41, "site-4": 14}
    assert all(0.0 <= v <= 1.0 for v in summary["per_site"].values())
    assert summary["history"][0]["train_loss"] > 0


def test_fed_camelyon16_one_round(tmp_path, image_data_root):
    summary = _summary(
        tmp_path, "fed_camelyon16", 2, image_data_root("fed_camelyon16"), num_updates=1, dataset_args={"max_tiles": 8}
    )
    assert summary["metric_name"] == "auc" and summary["batch_size"] == 16
    assert summary["n_test"] == {"site-1": 74, "site-2": 55}
    assert all(0.0 <= v <= 1.0 for v in summary["per_site"].values())
    assert summary["history"][0]["train_loss"] > 0


def test_a_site_without_the_cache_fails_the_run_naming_the_command(tmp_path, image_mirror):
    assert (
        main(["download", "fed_ixi", "--mirror", str(image_mirror("fed_ixi")), "--data-root", str(tmp_path / "data")])
        == 0
    )
    job = write_job("fed_ixi", "fedavg", tmp_path, num_rounds=1, train_timeout=60, validate_timeout=60)
    proc = run_simulator(job, tmp_path / "ws", 3, {"FLAMBY_FLARE_DATA": str(tmp_path / "data")}, timeout=600)
    log = (tmp_path / "ws" / "server" / "log.txt").read_text()
    assert proc.returncode != 0
    assert "site-1: Fed-IXI: the preprocessed cache" in log and "run `flamby-flare preprocess fed_ixi`" in log


def test_fed_ixi_fedprox_with_fedbn(tmp_path, image_data_root):
    """A strategy other than FedAvg on an image dataset, with FedBN on a model that has real normalization
    layers (the U-Net's nine BatchNorm3d): 2 rounds. The reported per-site dice is the saved global model's
    soft dice on that site's test volumes; each site's kept personalized model is the global model with its
    own normalization entries (different per site), and its reported metric is that model's. (FedAvg on the
    image datasets: the other tests here.)"""
    import torch

    from flamby_flare.datasets import get_dataset
    from flamby_flare.evaluation import evaluate
    from flamby_flare.personalization import normalization_keys

    summary = _summary(
        tmp_path,
        "fed_ixi",
        3,
        image_data_root("fed_ixi"),
        strategy="fedprox",
        num_updates=2,
        num_rounds=2,
        personalization={"method": "fedbn"},
    )
    assert summary["strategy"] == "FedProx" and summary["personalization"] == "fedbn" and summary["rounds"] == 2
    assert summary["metric_name"] == "dice" and summary["batch_size"] == 2
    assert summary["n_test"] == {"site-1": 1, "site-2": 1, "site-3": 1}
    assert all(h["train_loss"] > 0 for h in summary["history"])
    module = get_dataset("fed_ixi")
    final = torch.load(run_dir(tmp_path / "ws") / "FL_global_model.pt", weights_only=True)["model"]
    global_model = module.Baseline()
    global_model.load_state_dict(final)
    for center in range(3):
        test = module.FedClass(center, train=False, data_path=image_data_root("fed_ixi") / "fed_ixi")
        assert summary["per_site"][f"site-{center + 1}"] == pytest.approx(
            evaluate(module, global_model, test), rel=1e-6
        )
    local_keys = normalization_keys(module.Baseline())
    assert len(local_keys) == 9 * 5  # weight, bias, running mean and variance, batch count per layer
    kept = {}
    for center in range(3):
        site = f"site-{center + 1}"
        (path,) = (tmp_path / "ws" / site).rglob("*personalized_model.pt")
        kept[site] = torch.load(path, weights_only=True)["model"]
        assert all(torch.equal(kept[site][k], final[k]) for k in final if k not in local_keys)
        assert any(not torch.equal(kept[site][k], final[k]) for k in local_keys)
        model = module.Baseline()
        model.load_state_dict(kept[site])
        test = module.FedClass(center, train=False, data_path=image_data_root("fed_ixi") / "fed_ixi")
        assert summary["per_site_personalized"][site] == pytest.approx(evaluate(module, model, test), rel=1e-6)
    running_mean = next(k for k in local_keys if k.endswith("running_mean"))
    assert not torch.equal(kept["site-1"][running_mean], kept["site-2"][running_mean])  # each site's own statistics
