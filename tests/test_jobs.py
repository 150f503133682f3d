"""The committed job folders are exactly what the generator writes, and they use every site."""

import json

import pytest

from flamby_flare.datasets import get_dataset
from flamby_flare.jobs import all_jobs, job_files, job_name
from tests.conftest import REPO


@pytest.mark.parametrize("dataset,strategy", all_jobs())
def test_committed_job_is_generated(dataset, strategy):
    folder = REPO / "jobs" / job_name(dataset, strategy)
    for rel, content in job_files(dataset, strategy).items():
        assert (folder / rel).read_text() == content, f"{folder / rel} is stale: run `flamby-flare jobs`"


@pytest.mark.parametrize("dataset,strategy", all_jobs())
def test_job_settings_are_flamby_benchmark_settings(dataset, strategy):
    module = get_dataset(dataset)
    files = job_files(dataset, strategy)
    meta = json.loads(files["meta.json"])
    assert meta["deploy_map"]["app"] == ["server"] + [f"site-{i + 1}" for i in range(module.NUM_CLIENTS)]
    args = json.loads(files["app/config/config_fed_server.json"])["workflows"][0]["args"]
    assert args["num_rounds"] == module.get_nb_max_rounds(100) and args["num_updates"] == 100
    assert args["batch_size"] == module.BATCH_SIZE
    assert args["train_timeout"] > 0 and args["validate_timeout"] > 0
    assert files["app/custom/README.md"]  # BYOC marker: NVFlare's class allow-list would reject our classes


def test_fedavg_learning_rates():
    lr = lambda ds: json.loads(job_files(ds, "fedavg")["app/config/config_fed_server.json"])["workflows"][0]["args"]["learning_rate"]  # noqa: E731
    assert (lr("fed_heart_disease"), lr("fed_tcga_brca")) == (0.001, 0.1)
