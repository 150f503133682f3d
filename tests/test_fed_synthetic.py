"""Fed-Synthetic: FLamby's generator value for value, its heterogeneity knobs, the loader, the CLI, and a
federated run on a generated dataset (its sites are the generated centers)."""

from __future__ import annotations

import importlib.util
import json
import re

import numpy as np
import pytest
import torch

from flamby_flare.cli import main
from flamby_flare.datasets.fed_synthetic import FedSynthetic, generate, generate_synthetic_dataset
from flamby_flare.errors import DatasetNotFoundError
from tests import golden
from tests.conftest import REPO
from tests.simulator import pinned, read_streams, run_dir, run_simulator

FLAMBY_GENERATOR = (
    REPO.parent / "shared" / "peer" / "FLamby" / "flamby" / "datasets" / "fed_synthetic" / "synthetic_generator.py"
)
KNOBS = [
    dict(n_centers=4, n_samples=1000),
    dict(n_centers=6, n_samples=300, sample_repartition=2.0, noise_heterogeneity=[3.0, 1.0, 2.0, 42.0, 1.0, 9.0]),
    dict(n_centers=3, n_samples=100, sample_repartition=[1.0, 2.0, 3.0]),
    dict(n_centers=4, n_samples=200, features_heterogeneity=0.8, n_clusters=6, label_heterogeneity=0.5),
]


@pytest.mark.parametrize("knobs", KNOBS, ids=["defaults", "power_law_noise", "weights", "features_labels"])
def test_the_generator_gives_flambys_datasets_value_for_value(knobs):
    """FLamby's own generator (its file in ../shared/peer, run here) and ours, seed 42: the same rows."""
    spec = importlib.util.spec_from_file_location("flamby_synthetic_generator", FLAMBY_GENERATOR)
    flamby = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(flamby)
    frame, indices = flamby.generate_synthetic_dataset(classification=True, seed=42, **knobs)
    ours = generate_synthetic_dataset(seed=42, **knobs)
    assert [len(rows) for rows in ours] == [len(i) for i in indices]
    for rows, index in zip(ours, indices):
        assert np.array_equal(rows, frame.iloc[index].to_numpy())


def test_the_heterogeneity_knobs_do_what_they_say():
    sizes = [len(r) for r in generate_synthetic_dataset(n_centers=5, n_samples=2000, sample_repartition=3.0)]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > 10 * sizes[-1] and sum(sizes) == 2000
    skewed = generate_synthetic_dataset(n_centers=4, n_samples=800, label_heterogeneity=0.01)
    assert all(np.bincount(r[:, -1].astype(int)).max() / len(r) > 0.9 for r in skewed)  # about one class each
    even = generate_synthetic_dataset(n_centers=4, n_samples=800)
    assert all(set(np.bincount(r[:, -1].astype(int), minlength=3)) <= {66, 67} for r in even)
    noisy = generate_synthetic_dataset(n_centers=2, n_samples=2000, noise_heterogeneity=[100.0, 1.0], n_clusters=2)
    spread = [r[r[:, -1] == 0, :-1].var(axis=0).mean() for r in noisy]  # 0.1 / snr per feature
    assert spread[0] == pytest.approx(0.001, rel=0.15) and spread[1] == pytest.approx(0.1, rel=0.15)
    plain, shifted = (
        generate_synthetic_dataset(n_centers=3, n_samples=900, seed=1, features_heterogeneity=h) for h in (None, 2.0)
    )
    assert all(np.linalg.norm(s[:, :-1].mean(0) - p[:, :-1].mean(0)) > 1.0 for p, s in zip(plain, shifted))
    assert not np.array_equal(generate_synthetic_dataset(seed=1)[0], generate_synthetic_dataset(seed=2)[0])


def test_the_loader_splits_each_center_as_flamby(tmp_path):
    folder = generate(tmp_path / "fed_synthetic", log=lambda _: None, n_centers=3, n_samples=150, n_clusters=2)
    parts = [(FedSynthetic(c, True, data_path=folder), FedSynthetic(c, False, data_path=folder)) for c in range(3)]
    assert [(len(a), len(b)) for a, b in parts] == [(33, 17)] * 3
    pooled = FedSynthetic(train=True, pooled=True, data_path=folder)
    assert torch.equal(pooled.X, torch.cat([a.X for a, _ in parts]))
    x, y = parts[0][0][0]
    assert x.shape == (10,) and y.shape == (1,) and x.dtype == torch.float32
    rows = np.loadtxt(folder / "0.data", delimiter=",")
    train_rows = {tuple(np.float32(r[:-1])) for r in rows} & {tuple(v.numpy()) for v in parts[0][0].X}
    assert len(train_rows) == 33  # the train set is rows of the file
    with pytest.raises(ValueError, match="center must be in 0..2"):
        FedSynthetic(3, data_path=folder)


def test_generate_and_its_refusals(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FLAMBY_FLARE_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=r"run `flamby-flare generate`"):
        FedSynthetic()
    for argv, message in (
        (["--centers", "0"], "n_centers must be an integer >= 1, got 0"),
        (["--sample-repartition", "0.5"], "a power-law sample_repartition must be > 1, got 0.5"),
        (["--label-heterogeneity", "-1"], "label_heterogeneity must be a finite number > 0, got -1.0"),
        (["--features-heterogeneity", "inf"], "features_heterogeneity must be a finite number > 0, got inf"),
        (["--sample-repartition", "inf"], "a power-law sample_repartition must be > 1, got inf"),
        (
            ["--centers", "3", "--sample-repartition", "1", "1", "0"],
            "sample_repartition must be 3 weights > 0 (a center of weight 0 has no samples), got [1.0, 1.0, 0.0]",
        ),
        (
            ["--centers", "3", "--samples", "6", "--sample-repartition", "1", "1", "1e-9"],
            "sample_repartition [1.0, 1.0, 1e-09] gives center 2 0 of 6 samples (at least 2 each): "
            "more samples or more even weights",
        ),
        (["--centers", "3", "--noise-heterogeneity", "1", "2"], "noise_heterogeneity must be 3 signal-to-noise ratios"),
    ):
        assert main(["generate", *argv]) == 1
        assert capsys.readouterr().err == f"error: generate: {message}\n"
    assert main(["download", "fed_synthetic"]) == 1
    assert capsys.readouterr().err == "error: Fed-Synthetic is generated, not downloaded: run `flamby-flare generate`\n"
    assert (
        main(["generate", "--centers", "5", "--samples", "400", "--sample-repartition", "1", "1", "1", "1", "4"]) == 0
    )
    from flamby_flare.datasets import get_constants, get_dataset

    assert get_constants("fed_synthetic").NUM_CLIENTS == 5 == get_dataset("fed_synthetic").NUM_CLIENTS
    record = json.loads((tmp_path / "fed_synthetic" / "generation.json").read_text())
    assert (
        record["parameters"]["sample_repartition"] == [1.0, 1.0, 1.0, 1.0, 4.0] and sum(record["center_sizes"]) == 400
    )
    # too large for this machine: refused at once with the figures, the dataset there kept
    assert main(["generate", "--samples", "100000000000"]) == 1
    assert re.fullmatch(
        r"error: generate: n_samples 100000000000 x 11 columns needs about 16391\.3 GiB of memory "
        r"\([0-9.]+ GiB free\) and 25611\.4 GiB on disk \([0-9.]+ GiB free at .*\)\n",
        capsys.readouterr().err,
    )
    # stopped while writing (Ctrl-C after the first center): the dataset there before is whole and still verifies
    savetxt, calls = np.savetxt, []

    def interrupted(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        savetxt(*args, **kwargs)

    monkeypatch.setattr(np, "savetxt", interrupted)
    assert main(["generate", "--centers", "3", "--samples", "300"]) == 130
    monkeypatch.setattr(np, "savetxt", savetxt)
    assert get_constants("fed_synthetic").NUM_CLIENTS == 5 and len(FedSynthetic(4)) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fed_synthetic"]  # nothing half-written left beside it
    (tmp_path / "fed_synthetic" / "2.data").write_text("1,2,3\n")
    with pytest.raises(Exception, match="corrupted"):
        FedSynthetic(2)


@pytest.mark.simulator
def test_a_federated_run_on_three_generated_centers(tmp_path, monkeypatch):
    """The committed-style job (deployed to @ALL) runs on every generated center: -n 3 from the data."""
    from flamby_flare.jobs import write_job
    from flamby_flare.simulator import command

    monkeypatch.setenv("FLAMBY_FLARE_DATA", str(tmp_path / "data"))
    generate(
        tmp_path / "data" / "fed_synthetic", log=lambda _: None, n_centers=3, n_samples=240, label_heterogeneity=1.0
    )
    job = write_job(
        "fed_synthetic", "fedavg", tmp_path / "jobs", num_rounds=2, num_updates=10, seed=5, learning_rate=0.5
    )
    assert command(job, tmp_path / "ws", None)[-4:] == ["-n", "3", "-t", "3"]
    proc = run_simulator(job, tmp_path / "ws", 3, {"FLAMBY_FLARE_DATA": str(tmp_path / "data")})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = run_dir(tmp_path / "ws")
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["per_site"]) == ["site-1", "site-2", "site-3"] and summary["rounds"] == 2
    assert summary["n_test"] == {"site-1": 28, "site-2": 28, "site-3": 28}
    assert 0.0 <= summary["mean"] <= 1.0 and len(read_streams(out)["site-3"]["train_loss"]) == 2
    golden.check("simulator/synthetic_3_centers_fedavg_seed5", pinned(out))
