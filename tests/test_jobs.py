"""The committed job folders are exactly what the generator writes, with FLamby's settings."""

import glob
import json
import math

import pandas as pd
import pytest

from flamby_flare.cli import main
from flamby_flare.datasets import DATASETS, get_constants
from flamby_flare.hyperparameters import STRATEGIES
from flamby_flare.jobs import (
    CUSTOM_README,
    CUSTOM_README_TEXT,
    EXTRA_JOBS,
    all_jobs,
    committed_jobs,
    job_files,
    job_name,
)
from flamby_flare.strategies.base import method_label as flamby_method
from flamby_flare.strategies.base import strategy_names
from tests.conftest import REPO, reference_dir


def _server_args(files):
    return json.loads(files["app/config/config_fed_server.json"])["workflows"][0]["args"]


def test_the_matrix_is_complete_and_committed():
    from flamby_flare.hyperparameters import STRATEGIES

    assert strategy_names()[:7] == list(STRATEGIES)  # FLamby's seven, then the others (one file each)
    assert len(all_jobs()) == len(DATASETS) * len(strategy_names())
    committed = sorted(p.parent.name for p in (REPO / "jobs").glob("*/meta.json"))
    assert committed == sorted([job_name(d, s) for d, s in all_jobs()] + list(EXTRA_JOBS)) == sorted(committed_jobs())


@pytest.mark.parametrize("name", sorted(committed_jobs()))
def test_committed_job_is_generated(name):
    folder = REPO / "jobs" / name
    for rel, content in committed_jobs()[name].items():
        assert (folder / rel).read_text() == content, f"{folder / rel} is stale: run `flamby-flare jobs`"


@pytest.mark.parametrize("dataset", [d for d in DATASETS if d != "fed_synthetic"])  # FLamby benchmarked the others
def test_settings_are_flamby_benchmark_settings(dataset):
    """Rounds, batch size and every strategy's hyperparameters against FLamby's published result CSVs."""
    constants = get_constants(dataset)
    published = pd.concat(
        pd.read_csv(f) for f in glob.glob(str(reference_dir() / "flamby_results" / dataset / "*.csv"))
    )
    for strategy in STRATEGIES:
        files = job_files(dataset, strategy)
        meta = json.loads(files["meta.json"])
        assert meta["deploy_map"]["app"] == ["server"] + [f"site-{i + 1}" for i in range(constants.NUM_CLIENTS)]
        args = _server_args(files)
        assert args["num_rounds"] == constants.get_nb_max_rounds(100) and args["num_updates"] == 100
        assert args["batch_size"] == constants.BATCH_SIZE and args["train_timeout"] > 0 and args["validate_timeout"] > 0
        row = published[published.Method == flamby_method(strategy)].iloc[0]
        for column in ("learning_rate", "server_learning_rate", "mu", "tau"):
            value = row.get(column, float("nan"))
            if isinstance(value, float) and not math.isnan(value):
                assert args[column] == pytest.approx(value, rel=1e-6), (strategy, column)
        if strategy.startswith("fedad") or strategy == "fedyogi":
            assert args["tau"] in (1e-8, 1e-3)  # FLamby's class default 1e-3 where its config omits tau
        # NVFlare's mark of a job that brings its own code, and no code in it (the classes are the package's)
        assert [name for name in files if "custom/" in name] == [CUSTOM_README] and files[
            CUSTOM_README
        ] == CUSTOM_README_TEXT


def test_variants(tmp_path, capsys):
    assert (
        main(
            [
                "jobs",
                "--out",
                str(tmp_path),
                "--dataset",
                "fed_tcga_brca",
                "--strategy",
                "fedprox",
                "scaffold",
                "--seed",
                "3",
                "--rounds",
                "2",
                "--data-root",
                "/data/tcga",
            ]
        )
        == 0
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fed_tcga_brca_fedprox", "fed_tcga_brca_scaffold"]
    server = json.loads((tmp_path / "fed_tcga_brca_fedprox/app/config/config_fed_server.json").read_text())
    args = server["workflows"][0]["args"]
    assert (args["seed"], args["num_rounds"], args["mu"], args["learning_rate"]) == (3, 2, 0.1, 0.1)
    client = json.loads((tmp_path / "fed_tcga_brca_fedprox/app/config/config_fed_client.json").read_text())
    assert client["executors"][0]["executor"]["args"] == {"dataset": "fed_tcga_brca", "data_root": "/data/tcga"}
    with pytest.raises(SystemExit) as exit_:
        main(["jobs", "--out", str(tmp_path), "--dataset", "fed_mnist"])
    assert exit_.value.code == 2 and "unknown dataset 'fed_mnist'" in capsys.readouterr().err
    main(
        [
            "jobs",
            "--out",
            str(tmp_path / "quiet"),
            "--dataset",
            "fed_heart_disease",
            "--strategy",
            "fedavg",
            "--tracking",
            "none",
        ]
    )
    server = json.loads((tmp_path / "quiet/fed_heart_disease_fedavg/app/config/config_fed_server.json").read_text())
    assert server["components"] == []
    server = json.loads((tmp_path / "fed_tcga_brca_fedprox/app/config/config_fed_server.json").read_text())
    assert server["components"] == [
        {"id": "tensorboard", "path": "controllers.tracking.TensorBoardReceiver", "args": {}}
    ]


def test_fault_tolerance_variant(tmp_path):
    """--min-clients goes to the controller and to meta.json (NVFlare aborts below it); --resume to the controller."""
    assert (
        main(
            [
                "jobs",
                "--out",
                str(tmp_path),
                "--dataset",
                "fed_heart_disease",
                "--strategy",
                "fedavg",
                "--min-clients",
                "3",
                "--resume",
            ]
        )
        == 0
    )
    job = tmp_path / "fed_heart_disease_fedavg"
    args = json.loads((job / "app/config/config_fed_server.json").read_text())["workflows"][0]["args"]
    assert args["min_clients"] == 3 and args["resume"] is True
    assert json.loads((job / "meta.json").read_text())["min_clients"] == 3
    committed = json.loads((REPO / "jobs/fed_heart_disease_fedavg/meta.json").read_text())
    assert (
        committed["min_clients"] == 4
        and "resume"
        not in json.loads((REPO / "jobs/fed_heart_disease_fedavg/app/config/config_fed_server.json").read_text())[
            "workflows"
        ][0]["args"]
    )


def test_privacy_variants(tmp_path, capsys):
    """--dp-* put DP-SGD in the sites' executor, --client-dp-* the ClientLevelDP result filter; bad settings
    and client-level DP on SCAFFOLD are refused in one line."""
    assert (
        main(
            [
                "jobs",
                "--out",
                str(tmp_path),
                "--dataset",
                "fed_tcga_brca",
                "--strategy",
                "fedadam",
                "--dp-epsilon",
                "5",
                "--dp-delta",
                "1e-4",
                "--client-dp-clip",
                "0.5",
                "--client-dp-noise-multiplier",
                "1.2",
                "--client-dp-delta",
                "1e-3",
            ]
        )
        == 0
    )
    client = json.loads((tmp_path / "fed_tcga_brca_fedadam_dp_cdp/app/config/config_fed_client.json").read_text())
    assert client["executors"][0]["executor"]["args"]["dp_sgd"] == {
        "max_grad_norm": 1.1,
        "delta": 1e-4,
        "target_epsilon": 5.0,
        "accountant": "rdp",
    }
    (chain,) = client["task_result_filters"]
    assert chain["tasks"] == ["train"] and chain["filters"] == [
        {
            "path": "privacy.ClientLevelDP",
            "args": {"clip_norm": 0.5, "delta": 1e-3, "noise_multiplier": 1.2, "accountant": "rdp"},
        }
    ]
    committed = json.loads((REPO / "jobs/fed_heart_disease_fedavg_dp/app/config/config_fed_client.json").read_text())
    assert committed["executors"][0]["executor"]["args"]["dp_sgd"]["max_grad_norm"] == 1.1
    capsys.readouterr()
    assert (
        main(
            [
                "jobs",
                "--out",
                str(tmp_path),
                "--dataset",
                "fed_heart_disease",
                "--strategy",
                "scaffold",
                "--client-dp-clip",
                "1",
                "--client-dp-epsilon",
                "1",
                "--client-dp-delta",
                "1e-3",
            ]
        )
        == 1
    )
    assert "client-level DP cannot serve scaffold" in capsys.readouterr().err
    assert main(["jobs", "--out", str(tmp_path), "--dp-epsilon", "1"]) == 1
    assert "--dp-delta is required" in capsys.readouterr().err
    assert main(["jobs", "--out", str(tmp_path), "--dp-epsilon", "-1", "--dp-delta", "0.1"]) == 1
    assert capsys.readouterr().err.strip().endswith("target_epsilon must be > 0, got -1.0")


def test_image_dataset_site_settings(tmp_path, capsys):
    assert (
        main(
            [
                "jobs",
                "--out",
                str(tmp_path),
                "--dataset",
                "fed_camelyon16",
                "--strategy",
                "fedavg",
                "--precision",
                "bf16",
                "--num-workers",
                "4",
                "--dataset-args",
                '{"max_tiles": 5000}',
                "--model-args",
                '{"mask_padding": false}',
                "--pretrained-weights",
                "/weights/none.pt",
            ]
        )
        == 0
    )
    client = json.loads((tmp_path / "fed_camelyon16_fedavg/app/config/config_fed_client.json").read_text())
    assert client["executors"][0]["executor"]["args"] == {
        "dataset": "fed_camelyon16",
        "precision": "bf16",
        "num_workers": 4,
        "dataset_args": {"max_tiles": 5000},
        "model_args": {"mask_padding": False},
    }
    server = json.loads((tmp_path / "fed_camelyon16_fedavg/app/config/config_fed_server.json").read_text())
    assert server["workflows"][0]["args"]["pretrained_weights"] == "/weights/none.pt"
    assert main(["jobs", "--out", str(tmp_path), "--dataset-args", "[1, 2]"]) == 1
    assert "--dataset-args must be a JSON object" in capsys.readouterr().err


def test_jobs_for_sites_that_forbid_custom_code(tmp_path, capsys):
    """``--no-custom-code``: the same jobs (the named variants too) without the app/custom/ mark, so a site's class
    allow-list applies; written over a job with the mark, the mark goes; over a custom folder with code, refused."""
    out = tmp_path / "jobs"
    assert main(["jobs", "--out", str(out), "--dataset", "fed_heart_disease", "--strategy", "fedavg"]) == 0
    assert (out / "fed_heart_disease_fedavg" / CUSTOM_README).is_file()
    assert main(["jobs", "--out", str(out), "--no-custom-code"]) == 0
    written = sorted(p.parent.name for p in out.glob("*/meta.json"))
    assert written == sorted(committed_jobs()) and not list(out.glob("*/app/custom"))
    for name, files in committed_jobs().items():
        for rel, content in files.items():
            assert rel == CUSTOM_README or (out / name / rel).read_text() == content
    (out / "fed_heart_disease_fedavg" / "app" / "custom").mkdir()
    (out / "fed_heart_disease_fedavg" / "app" / "custom" / "mine.py").write_text("")
    capsys.readouterr()
    assert (
        main(["jobs", "--out", str(out), "--dataset", "fed_heart_disease", "--strategy", "fedavg", "--no-custom-code"])
        == 1
    )
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("app/custom holds files: a job without custom code cannot be written there")
    )
