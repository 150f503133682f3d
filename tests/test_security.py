"""What a hospital's security review and a busy shared machine try (docs/security.md lists every case): each
case is refused at its root, in one line naming what is wrong, and loses nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from flamby_flare.cli import main
from flamby_flare.datasets import fed_heart_disease as heart
from flamby_flare.download import COMPLETE_MARKER, DatasetSource, RemoteFile, check_dataset_files, download
from flamby_flare.errors import CorruptedDatasetError, DatasetFormatError, DownloadError, FlambyFlareError, site_message
from flamby_flare.jobs import job_files, write_files
from flamby_flare.paths import run_folder
from flamby_flare.protocol import META_ERROR, TrainPlan
from flamby_flare.settings import SettingError
from flamby_flare.simulator import lost_to_the_port_race
from tests import golden
from tests.simulator import kill_group, pinned, run_dir, run_simulator, site_worker_pids, start_simulator


# ---- a server-chosen path ------------------------------------------------------------------------
@pytest.mark.parametrize("key", ["../../victim", "a/b", "..", ".hidden", "x" * 300, "run\0key", 7])
def test_a_run_key_that_is_not_a_plain_name_is_refused(tmp_path, key):
    with pytest.raises(FlambyFlareError, match="not a plain name"):
        run_folder(tmp_path / "state", key)


def test_a_site_never_deletes_outside_its_state_root(tmp_path, heart_dir):
    from executors.trainer import SiteTrainer

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    trainer = SiteTrainer("fed_heart_disease", 0, heart_dir.parent, "cpu", state_dir=tmp_path / "state" / "site-1")
    hostile = TrainPlan("fed_heart_disease", 42, 0.01, 1, 4, run_key="../../victim")
    with pytest.raises(FlambyFlareError, match="not a plain name"):
        trainer.forget(hostile)
    with pytest.raises(FlambyFlareError, match="not a plain name"):
        trainer.train({k: np.asarray(v) for k, v in trainer.model.state_dict().items()}, hostile, 0, 1)
    assert (victim / "keep.txt").read_text() == "precious"


def test_a_running_run_cannot_be_opened_twice(tmp_path):
    """A run's checkpoint folder is locked while it runs: a resume of it (another process) is refused."""
    from controllers.checkpoint import Checkpointer

    first = Checkpointer(tmp_path / "job-0000abcd", {}, "job-0000abcd")
    first.acquire()
    second = Checkpointer(tmp_path / "job-0000abcd", {}, "job-0000abcd")
    with pytest.raises(RuntimeError, match="run job-0000abcd is running in another process"):
        second.acquire()
    first.release()
    second.acquire()
    second.release()


# ---- integrity -----------------------------------------------------------------------------------
def _tofu_source(check=lambda name, path: None) -> DatasetSource:
    """A dataset whose source publishes no checksum (trust on first use), like IXI-Tiny's and ISIC's archives."""
    return DatasetSource(
        "tofu_set",
        "TOFU set",
        (RemoteFile("archive.bin", "https://example.invalid/a", None),),
        "CC0",
        "-",
        verify=check,
    )


def test_trust_on_first_use_keeps_its_pin(tmp_path):
    source, mirror, root = _tofu_source(), tmp_path / "mirror", tmp_path / "data"
    (mirror / "tofu_set").mkdir(parents=True)
    (mirror / "tofu_set" / "archive.bin").write_bytes(b"the archive verified first")
    folder = download(source, data_root=root, mirror=mirror, log=lambda _: None)
    pinned_hash = json.loads((folder / COMPLETE_MARKER).read_text())["files"]["archive.bin"]
    (folder / "archive.bin").write_bytes(b"damaged")  # the local copy is damaged, and the source now serves another
    (mirror / "tofu_set" / "archive.bin").write_bytes(b"a different archive from the source")
    with pytest.raises(
        DownloadError, match="not the file this data root verified at its first download.*--accept-new-checksums"
    ):
        download(source, data_root=root, mirror=mirror, log=lambda _: None)
    assert json.loads((folder / COMPLETE_MARKER).read_text())["files"]["archive.bin"] == pinned_hash  # the pin stays
    lines = []
    download(source, data_root=root, mirror=mirror, log=lines.append, accept_new_checksums=True)
    assert any("NEW SHA-256 accepted" in line for line in lines)
    assert json.loads((folder / COMPLETE_MARKER).read_text())["files"]["archive.bin"] != pinned_hash


def test_an_edit_that_puts_back_the_modification_time_is_caught(tmp_path, mirror, capsys):
    folder = download(heart.SOURCE, data_root=tmp_path, mirror=mirror, log=lambda _: None)
    target = folder / "processed.cleveland.data"
    before = target.stat()
    data = bytearray(target.read_bytes())
    data[100] = ord("9") if data[100] != ord("9") else ord("8")  # same size
    target.write_bytes(bytes(data))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))  # the modification time put back
    assert target.stat().st_size == before.st_size and target.stat().st_mtime_ns == before.st_mtime_ns
    with pytest.raises(CorruptedDatasetError, match="processed.cleveland.data is corrupted"):
        check_dataset_files(heart.SOURCE, folder)
    assert main(["verify", "fed_heart_disease", "--data-root", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert (
        "processed.cleveland.data: CORRUPTED" in out.out and "failed verification (processed.cleveland.data)" in out.err
    )


def test_a_sites_small_files_are_rehashed_at_every_start(tmp_path, mirror, monkeypatch):
    """Even a stat forged as the recorded one does not pass at a site's start: its tabular files are re-hashed."""
    import flamby_flare.download as dl
    from executors.trainer import SiteTrainer

    folder = download(heart.SOURCE, data_root=tmp_path, mirror=mirror, log=lambda _: None)
    target = folder / "processed.va.data"
    original = target.read_bytes()
    target.write_bytes(original.replace(b"63,1,4,140", b"64,1,4,140", 1))
    assert target.read_bytes() != original
    record = json.loads((folder / COMPLETE_MARKER).read_text())
    record["stats"]["processed.va.data"] = dl._stat(target)  # as if the stat had been forged
    (folder / COMPLETE_MARKER).write_text(json.dumps(record))
    check_dataset_files(heart.SOURCE, folder)  # the stat shortcut alone is fooled
    with pytest.raises(CorruptedDatasetError, match="processed.va.data is corrupted"):
        SiteTrainer("fed_heart_disease", 3, tmp_path, "cpu")


# ---- bad input: one line naming the argument --------------------------------------------------------
@pytest.mark.parametrize(
    "arguments,message",
    [
        ({"num_rounds": 0}, "num_rounds must be an integer >= 1, got 0"),
        ({"num_rounds": -1}, "num_rounds must be an integer >= 1, got -1"),
        ({"num_rounds": "ten"}, "num_rounds must be an integer >= 1, got 'ten'"),
        ({"num_updates": -5}, "num_updates must be an integer >= 1, got -5"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"learning_rate": "fast"}, "learning_rate must be a number > 0, got 'fast'"),
        ({"train_timeout": "600"}, "train_timeout must be an integer >= 1, got '600'"),
        ({"min_clients": 0}, "min_clients must be an integer >= 1, got 0"),
        ({"resume_run": "../x"}, "resume_run must be a run id"),
        ({"results_dir": "/home/me/benchmark"}, "results_dir must be a sub-folder of the run directory, a plain name"),
        ({"results_dir": "../../elsewhere"}, "results_dir must be a sub-folder of the run directory, a plain name"),
        ({"checkpoint_dir": "/home/me"}, "checkpoint_dir must be a folder of the server's state root, a plain name"),
        ({"checkpoint_dir": ".."}, "checkpoint_dir must be a folder of the server's state root, a plain name"),
        ({"checkpoint_dir": 7}, "checkpoint_dir must be a string, got 7"),
        ({"mu": -1.0}, "unknown argument"),  # FedAvg has no mu
    ],
)
def test_controller_arguments_are_checked_at_start(arguments, message):
    import controllers

    with pytest.raises(SettingError, match="^controllers.FedAvg: " + message.replace("(", r"\(")):
        controllers.FedAvg(dataset="fed_heart_disease", **arguments)


def test_a_refusal_at_start_is_logged_as_its_one_line_before_nvflare_reports_it(caplog):
    """NVFlare logs a component that fails to build with its traceback: the controller and the executor log the
    refusal's one line first, so it is the first error line a user sees."""
    import logging

    import controllers
    from executors.site_executor import FlambySiteExecutor

    with caplog.at_level(logging.ERROR):
        with pytest.raises(SettingError):
            controllers.FedAvg(dataset="fed_heart_disease", num_rounds=0)
        with pytest.raises(SettingError):
            FlambySiteExecutor("fed_heart_disease", num_workers=-1)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "controllers.FedAvg: num_rounds must be an integer >= 1, got 0",
        "executors.FlambySiteExecutor: num_workers must be an integer >= 0, got -1",
    ]


@pytest.mark.parametrize(
    "arguments,message",
    [
        ({"num_workers": -1}, "num_workers must be an integer >= 0, got -1"),
        ({"precision": "fp16"}, "precision must be one of fp32, bf16, got 'fp16'"),
        ({"device": "gpu"}, "device must be auto, cpu, cuda or cuda:<index>, got 'gpu'"),
        ({"dataset_args": "[1]"}, "dataset_args must be a JSON object, got '[1]'"),
    ],
)
def test_executor_arguments_are_checked_at_start(arguments, message):
    from executors.site_executor import FlambySiteExecutor

    with pytest.raises(
        SettingError, match="^executors.FlambySiteExecutor: " + message.replace("(", r"\(").replace("[", r"\[")
    ):
        FlambySiteExecutor("fed_heart_disease", **arguments)


def test_a_finished_run_deletes_only_what_it_wrote_in_its_checkpoint_folder(tmp_path):
    """A checkpoint folder that held other files (a job's ``checkpoint_dir`` naming a folder in use) keeps them when
    the run ends: the run removes its checkpoint and lock, and the folder only if that leaves it empty."""
    from controllers.checkpoint import Checkpointer, open_run

    (tmp_path / "server" / "shared").mkdir(parents=True)
    (tmp_path / "server" / "shared" / "keep.txt").write_text("not the run's")
    keeper, _ = open_run(tmp_path / "server", "job", {"rounds": 1}, False, None, "shared")
    keeper.save(1, {}, {}, [], {})
    keeper.delete()
    assert sorted(p.name for p in (tmp_path / "server" / "shared").iterdir()) == ["keep.txt"]
    alone = Checkpointer(tmp_path / "server" / "alone", {"rounds": 1}, "alone")
    alone.acquire()
    alone.save(1, {}, {}, [], {})
    alone.delete()
    assert not (tmp_path / "server" / "alone").exists()


def test_a_job_name_of_any_spelling_gives_run_ids_the_sites_accept():
    """The run id starts with the job's name from meta.json: whatever that name, it is made a plain name with room
    for the run's suffix, so no site refuses the run key (and blames the server) for it."""
    from flamby_flare.paths import is_plain_name, plain_name

    for name in ("../../x", "-x", "_y", ".hidden", "a..b", "x" * 300, "名字", "a b/c", ""):
        assert is_plain_name(plain_name(name) + "-0123abcd-ffffffff"), name


def test_heterogeneity_checks_its_out_folder_before_the_work(tmp_path, capsys, data_root):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["heterogeneity", "fed_heart_disease", "--data-root", str(data_root), "--out", str(blocker)]) == 1
    assert capsys.readouterr().err.startswith(f"error: the --out folder {blocker} is not writable")


def test_generator_and_download_arguments_are_checked(tmp_path, capsys):
    assert main(["jobs", "--out", str(tmp_path), "--dataset", "fed_heart_disease", "--rounds", "-3"]) == 1
    assert main(["jobs", "--out", str(tmp_path), "--dataset", "fed_heart_disease", "--min-clients", "0"]) == 1
    assert main(["download", "fed_heart_disease", "--center", "9", "--data-root", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "error: controllers.FedAvg: num_rounds must be an integer >= 1, got -3",
        "error: controllers.FedAvg: min_clients must be an integer >= 1, got 0",
        "error: --center must be one of fed_heart_disease's centers 0..3, got 9",
    ]
    assert not list(tmp_path.iterdir())  # no job was written


# ---- errors that leave a site carry no data value --------------------------------------------------
def test_a_bad_cell_is_named_by_file_row_and_column_never_by_value(tmp_path):
    from flamby_flare.datasets.fed_heart_disease.dataset import _read_table

    path = tmp_path / "processed.va.data"
    path.write_text(
        "63.0,1.0,1.0,145.0,233.0,1.0,2.0,150.0,0.0,2.3,3.0,0.0,6.0,0\n"
        "67.0,1.0,4.0,abc.0,286.0,0.0,2.0,108.0,1.0,1.5,2.0,3.0,3.0,2\n"
    )
    with pytest.raises(DatasetFormatError) as info:
        _read_table(path)
    assert str(info.value) == "processed.va.data row 2 column 3: not a number" and "abc" not in str(info.value)
    path.write_text("63.0,1.0,1.0,145.0,233.0\n")
    with pytest.raises(DatasetFormatError, match="processed.va.data row 1 has 5 columns, expected 14"):
        _read_table(path)
    path.write_text("63.0,1.0,1.0,inf,233.0,1.0,2.0,150.0,0.0,2.3,3.0,0.0,6.0,0\n")
    with pytest.raises(DatasetFormatError, match="row 1 column 3: not a finite number"):
        _read_table(path)


def test_tcga_without_a_column_is_named(tmp_path, tcga_dir):
    import pandas as pd

    from flamby_flare.datasets.fed_tcga_brca.dataset import _load

    shutil.copy(tcga_dir / "train_test_split.csv", tmp_path)
    pd.read_csv(tcga_dir / "brca.csv").drop(columns=["E"]).to_csv(tmp_path / "brca.csv", index=False)
    with pytest.raises(DatasetFormatError, match="brca.csv has 41 columns, expected 42"):
        _load(str(tmp_path))
    frame = pd.read_csv(tcga_dir / "brca.csv")
    frame["age_at_index"] = frame["age_at_index"].astype(object)
    frame.loc[3, "age_at_index"] = "abc.0"
    frame.to_csv(tmp_path / "brca.csv", index=False)
    with pytest.raises(DatasetFormatError, match="brca.csv column 'age_at_index' is not numeric"):
        _load(str(tmp_path))


def test_a_failed_task_tells_the_server_its_type_not_its_text(heart_dir, tmp_path):
    from nvflare.apis.fl_constant import ReservedKey
    from nvflare.apis.fl_context import FLContext
    from nvflare.apis.signal import Signal
    from nvflare.app_common.abstract.fl_model import FLModel, ParamsType
    from nvflare.app_common.utils.fl_model_utils import FLModelUtils

    from executors.site_executor import FlambySiteExecutor
    from executors.trainer import SiteTrainer

    executor = FlambySiteExecutor("fed_heart_disease")
    executor._trainer = SiteTrainer("fed_heart_disease", 1, heart_dir.parent, "cpu", state_dir=tmp_path)

    def leak(*args, **kwargs):
        raise ValueError("could not convert string to float: 'abc.0'")

    executor._trainer.train = leak
    ctx = FLContext()
    ctx.set_prop(ReservedKey.IDENTITY_NAME, "site-2", private=False, sticky=False)
    task = FLModel(
        params_type=ParamsType.FULL,
        params={},
        current_round=0,
        total_rounds=1,
        meta=TrainPlan("fed_heart_disease", 42, 0.01, 1, 4).to_meta(),
    )
    reply = FLModelUtils.from_shareable(executor.execute("train", FLModelUtils.to_shareable(task), ctx, Signal()))
    assert reply.meta[META_ERROR] == "site-2: train failed: ValueError (the site's log has the details)"
    assert (
        site_message(DatasetFormatError("x.csv row 2 column 3: not a number")) == "x.csv row 2 column 3: not a number"
    )


def test_an_unwritable_state_folder_is_named(tmp_path):
    from executors.site_state import SiteState
    from flamby_flare.errors import SiteStateError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(SiteStateError, match=f"cannot write this site's run state in {blocker / 'run'}"):
        SiteState(blocker / "run").save("c", {"w": np.zeros(2)})


# ---- divergence beyond NaN --------------------------------------------------------------------------
def test_exploding_weights_count_as_divergence(heart_dir):
    """lr 1e6 on heart: finite losses every round, but weights of norm ~1e5 against ~0.8 at start."""
    from executors.trainer import SiteTrainer
    from flamby_flare.divergence import divergence
    from flamby_flare.model_state import initial_model, to_numpy_state

    params = to_numpy_state(initial_model(heart, 42))
    keys = ["linear.weight", "linear.bias"]
    start = float(np.sqrt(sum((params[k].astype(np.float64) ** 2).sum() for k in keys)))
    result = SiteTrainer("fed_heart_disease", 0, heart_dir.parent, "cpu").train(
        params, TrainPlan("fed_heart_disease", 42, 1e6, 100, 4), 0
    )
    assert np.isfinite(result.loss)
    reason = divergence(result.loss, result.params, keys, start)
    assert reason is not None and reason.startswith("the weights' norm grew to")
    assert (
        divergence(0.5, params, keys, start) is None
        and divergence(float("nan"), params, keys, start) == "the training loss is nan"
    )
    from flamby_flare.results import format_table  # the printed table says the recorded reason, not another one

    summary = {
        "dataset": "fed_heart_disease",
        "metric_name": "accuracy",
        "method": "FedAvg100",
        "seed": 42,
        "rounds": 1,
        "num_updates": 100,
        "wall_time_s": 1.0,
        "per_site": {"site-1": float("nan")},
        "n_test": {"site-1": 104},
        "mean": float("nan"),
        "diverged_at_round": 1,
        "diverged_because": reason,
    }
    assert format_table(summary).splitlines()[-1] == f"DIVERGED in round 1: {reason}; training stopped"


def _heart_in_process(heart_dir, **overrides):
    """FLamby's in-process FedAvg on heart's four centers, FLamby's settings but for ``overrides``."""
    import torch
    from torch.utils.data import DataLoader

    from flamby_flare.strategies import FedAvg

    torch.manual_seed(0)
    loaders = [
        DataLoader(heart.FedHeartDisease(center=c, train=True, data_path=heart_dir), batch_size=4, shuffle=True)
        for c in range(4)
    ]
    arguments = {
        "training_dataloaders": loaders,
        "model": heart.Baseline(),
        "loss": heart.BaselineLoss(),
        "optimizer_class": torch.optim.SGD,
        "learning_rate": heart.LR,
        "num_updates": 10,
        "nrounds": 3,
        **overrides,
    }
    return FedAvg(**arguments)


def test_the_in_process_runner_applies_the_divergence_rule_and_checks_its_arguments(heart_dir):
    """FLamby's API as the NVFlare run: a NaN loss or lr 1e6 stops at round 1 naming why (the models keep the
    initial weights, no accuracy for an all-NaN model); nrounds 0, an empty DataLoader, a model without
    parameters and an optimizer named by a string are refused in one line each."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from flamby_flare.divergence import TrainingDiverged

    class NaNLoss(torch.nn.Module):
        def forward(self, output, target):
            return (output * float("nan")).mean()

    strategy = _heart_in_process(heart_dir, loss=NaNLoss())
    start = {k: v.clone() for k, v in strategy.models_list[0].model.state_dict().items()}
    with pytest.raises(TrainingDiverged, match=r"^training diverged in round 1 \(the training loss is nan\)$"):
        strategy.run()
    assert all(torch.equal(start[k], v) for k, v in strategy.models_list[0].model.state_dict().items())
    with pytest.raises(TrainingDiverged, match=r"^training diverged in round 1 \(the weights' norm grew to "):
        _heart_in_process(heart_dir, learning_rate=1e6).run()
    empty = DataLoader(TensorDataset(torch.zeros(0, 13), torch.zeros(0, 1)), batch_size=4)
    for overrides, message in (
        ({"nrounds": 0}, "nrounds must be >= 1, got 0"),
        ({"training_dataloaders": [empty]}, r"training_dataloaders\[0\] has no samples"),
        ({"model": torch.nn.ReLU()}, "model has no trainable parameters"),
        (
            {"optimizer_class": "SGD"},
            "optimizer_class must be an optimizer class \\(e.g. torch.optim.SGD\\), got 'SGD'",
        ),
    ):
        with pytest.raises(SettingError, match="^FedAvg: " + message):
            _heart_in_process(heart_dir, **overrides)


# ---- end to end, in NVFlare's simulator ------------------------------------------------------------
@pytest.mark.simulator
def test_identical_runs_at_once_do_not_share_state(tmp_path, data_root):
    """Two identical SCAFFOLD heart jobs (sites keep c_i between rounds) on one state root at the same time: each
    has its own run id and state, and each gives the solo run's recorded result."""
    job = write_files(
        tmp_path / "job",
        job_files("fed_heart_disease", "scaffold", num_rounds=3, num_updates=50, learning_rate=0.03, seed=7),
    )
    env = {"FLAMBY_FLARE_DATA": str(data_root), "FLAMBY_FLARE_STATE": str(tmp_path / "state")}
    runs = [start_simulator(job, tmp_path / f"ws{i}", 4, env, tmp_path / f"run{i}.log") for i in range(2)]
    try:
        codes = [proc.wait(timeout=900) for proc in runs]
    finally:
        for proc in runs:
            kill_group(proc)
    for i, code in enumerate(codes):
        if code != 0 and lost_to_the_port_race(
            tmp_path / f"ws{i}"
        ):  # NVFlare's race (tests/simulator.py): again, alone
            code = run_simulator(job, tmp_path / f"ws{i}", 4, env).returncode
        assert code == 0, (tmp_path / f"run{i}.log").read_text()[-2000:]
    summaries = [json.loads((run_dir(tmp_path / f"ws{i}") / "summary.json").read_text()) for i in range(2)]
    assert summaries[0]["run_id"] != summaries[1]["run_id"]
    for i in range(2):
        golden.check("simulator/heart_scaffold_seed7", pinned(run_dir(tmp_path / f"ws{i}")))
    assert not any((tmp_path / "state").glob("site-*/*/*.npz"))  # each cleaned its own state up


def _paths(config) -> set[str]:
    """Every component path a job config names, however deep."""
    if isinstance(config, dict):
        return ({config["path"]} if isinstance(config.get("path"), str) else set()) | {
            p for v in config.values() for p in _paths(v)
        }
    return {p for v in config for p in _paths(v)} if isinstance(config, list) else set()


def test_the_site_policy_admits_exactly_the_projects_component_classes(tmp_path):
    """The allow-list a site gets admits each class a job of ours can name, and nothing else of ours or NVFlare's:
    not a module's functions (``controllers.base.write_results`` truncated any results.csv it was pointed at), not
    NVFlare's MLflowReceiver (it writes wherever its ``tracking_uri`` says), not ``subprocess.Popen``. NVFlare's
    own matching decides."""
    import ast
    import importlib
    import importlib.util

    from nvflare.app_common.widgets.component_path_authorizer import ComponentPathAuthorizer

    from flamby_flare.jobs import committed_jobs, component_classes
    from flamby_flare.site_policy import admit_project_classes

    for path in component_classes():  # each a class (read from its module's source where it is defined there)
        module, name = path.rsplit(".", 1)
        tree = ast.parse(Path(importlib.util.find_spec(module).origin).read_text())
        if not any(isinstance(node, ast.ClassDef) and node.name == name for node in tree.body):
            assert isinstance(getattr(importlib.import_module(module), name), type), path
    variants = [
        job_files("fed_heart_disease", "fedavg", quantization="float16", tracking="mlflow"),
        job_files(
            "fed_heart_disease",
            "fedprox",
            homomorphic_encryption=True,
            client_dp={"clip_norm": 1.0, "noise_multiplier": 1.0, "delta": 1e-3},
        ),
        *committed_jobs().values(),
    ]
    named = {
        p
        for files in variants
        for rel, text in files.items()
        if rel.endswith(".json")
        for p in _paths(json.loads(text))
    }
    assert named <= set(component_classes()) and len(named) == len(component_classes())
    authorizer = ComponentPathAuthorizer()
    allow_list, mode, _ = authorizer._get_policy_from_resources(json.loads(admit_project_classes(tmp_path).read_text()))
    admitted = lambda path: any(authorizer._path_matches_prefix(path, entry) for entry in allow_list)  # noqa: E731
    assert mode.value == "enforce" and all(admitted(p) for p in named)
    for hostile in (
        "controllers.base.write_results",
        "controllers.base.check_writable",
        "controllers.checkpoint.open_run",
        "privacy.dp_sgd.torch.save",
        "nvflare.app_opt.tracking.mlflow.mlflow_receiver.MLflowReceiver",
        "nvflare.app_common.statistics.json_stats_file_persistor.JsonStatsFileWriter",
        "subprocess.Popen",
    ):
        assert not admitted(hostile), hostile


@pytest.mark.simulator
def test_a_job_naming_a_class_outside_the_allow_list_is_refused(tmp_path, data_root):
    """A job without custom code (what a site that forbids custom code runs) is checked against the site's class
    allow-list, which admits NVFlare's and this project's classes: a job naming subprocess.Popen runs nothing;
    the same job with its custom/ mark taken off is refused the same way."""
    marker = tmp_path / "pwned"
    files = job_files("fed_heart_disease", "fedavg", num_rounds=1, custom_code=False)
    server = json.loads(files["app/config/config_fed_server.json"])
    server["components"] = [{"id": "x", "path": "subprocess.Popen", "args": {"args": ["touch", str(marker)]}}]
    files["app/config/config_fed_server.json"] = json.dumps(server)
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("flamby-flare")),
            "simulator",
            str(write_files(tmp_path / "job", files)),
            "-w",
            str(tmp_path / "ws"),
        ],
        env={**os.environ, "FLAMBY_FLARE_DATA": str(data_root)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0 and not marker.exists()
    assert proc.stderr.strip().splitlines()[-1] == (  # the cause, last, in one line (not NVFlare's last words)
        "error: ComponentNotAuthorized: component not authorized: Component 'subprocess.Popen' at config path "
        f"'components.#1' is not in allow_list (log: {tmp_path / 'ws' / 'server' / 'log.txt'})"
    )


@pytest.mark.simulator
def test_a_job_without_executors_does_not_exit_0(tmp_path, data_root):
    files = job_files("fed_heart_disease", "fedavg", num_rounds=1, train_timeout=60)
    client = json.loads(files["app/config/config_fed_client.json"])
    client["executors"] = []
    files["app/config/config_fed_client.json"] = json.dumps(client)
    proc = run_simulator(
        write_files(tmp_path / "job", files), tmp_path / "ws", 4, {"FLAMBY_FLARE_DATA": str(data_root)}, timeout=300
    )
    assert proc.returncode != 0 and not (run_dir(tmp_path / "ws") / "summary.json").exists()
    assert (
        "the run stopped before its end, with no result (its sites stopped, or the job was aborted); no round was "
        "completed, so there is nothing to resume"
    ) in (tmp_path / "ws" / "server" / "log.txt").read_text()


@pytest.mark.simulator
@pytest.mark.parametrize("min_clients", [4, 3])
def test_a_dead_site_is_noticed_within_30_s(min_clients, tmp_path, data_root):
    """SIGKILL of site-4's process in the middle of a heart run: after the first round a task may take at most
    max(30 s, 10 x the slowest round), so the run fails naming site-4 (all sites needed) or goes on without it."""
    rounds = 12
    job = write_files(
        tmp_path / "job",
        job_files("fed_heart_disease", "fedavg", num_rounds=rounds, num_updates=500, min_clients=min_clients),
    )
    ws, server_log = tmp_path / "ws", tmp_path / "ws" / "server" / "log.txt"
    sim = start_simulator(job, ws, 4, {"FLAMBY_FLARE_DATA": str(data_root)}, tmp_path / "run.log")
    log, code = "", None
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (
            server_log.is_file() and f"round 3/{rounds}" in server_log.read_text(errors="replace")
        ):
            assert sim.poll() is None, (tmp_path / "run.log").read_text()[-2000:]
            time.sleep(0.1)
        killed_at = time.monotonic()
        pids = site_worker_pids(ws, "site-4")
        assert pids, "site-4's worker process not found"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        while time.monotonic() - killed_at < 120:
            log = server_log.read_text(errors="replace")
            if "no valid result from site-4" in log:
                break
            time.sleep(0.2)
        noticed = time.monotonic() - killed_at
        if min_clients == 3:
            code = sim.wait(timeout=300)
    finally:
        kill_group(sim)
    assert "no valid result from site-4" in log and noticed < 45, noticed
    if min_clients == 4:
        assert "the run needs 4 (min_clients)" in log
    else:
        summary = json.loads((run_dir(ws) / "summary.json").read_text())
        assert code == 0 and list(summary["dropped_sites"]) == ["site-4"] and len(summary["history"]) == rounds
