"""The benchmark: resumable store, crash-safe sweeps, divergence, report numbers and figure."""

import copy
import inspect
import json
import math
import signal
import subprocess
import sys
import tempfile
import time

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import torch

from flamby_flare.benchmark import runner
from flamby_flare.benchmark.central import Diverged, train_central
from flamby_flare.benchmark.dp_report import compare_dp, summarize_dp
from flamby_flare.benchmark.perso_report import compare_perso, summarize_perso
from flamby_flare.benchmark.report import compare, summarize, write_report
from flamby_flare.benchmark.runner import DPGrid, cell_dir, plan_cells, run_federated, split_batches, write_batch_job
from flamby_flare.benchmark.store import COLUMNS, ResultStore
from flamby_flare.datasets import fed_tcga_brca
from flamby_flare.evaluation import evaluate_state, flamby_test_sets
from flamby_flare.model_state import initial_model, to_numpy_state
from tests import golden
from tests.conftest import REPO


def _cell_rows(method, seed, metrics, **extra):
    return [
        {"Test": t, "Method": method, "Metric": v, "seed": seed, "status": "ok", **extra} for t, v in metrics.items()
    ]


def test_store_repairs_a_torn_line_and_a_partial_cell(tmp_path):
    store = ResultStore(tmp_path / "r.csv", rows_per_cell=3)
    store.append(_cell_rows("A", 1, {"client_test_0": 0.5, "client_test_1": 0.6, "Pooled Test": 0.55}))
    with open(tmp_path / "r.csv", "a") as f:  # a kill mid-cell: one full row of cell B, then half a line
        f.write("client_test_0,B,0.7,1" + "," * (len(COLUMNS) - 4) + "\n" + "client_test_1,B,0.")
    reopened = ResultStore(tmp_path / "r.csv", rows_per_cell=3)
    assert reopened.is_done({"Method": "A", "seed": 1}) and not reopened.is_done({"Method": "B", "seed": 1})
    frame = reopened.frame()
    assert list(frame["Method"]) == ["A"] * 3
    with pytest.raises(ValueError):
        reopened.append(_cell_rows("B", 1, {"client_test_0": 0.7}))


@pytest.mark.simulator
def test_a_sweep_stopped_by_ctrl_c_completes_on_rerun_without_duplicates(tmp_path, data_root):
    """`flamby-flare benchmark` on heart, seed 42, the central cells and FedAvg, stopped by Ctrl-C (SIGINT to its
    process group, as a terminal sends it) while the federated cell runs: within seconds it exits 130 saying
    where its finished cells are, and nothing it started is left running (the simulator's site workers run in
    sessions of their own). Run again: no duplicate or missing row, and every value is FLamby's published
    seed-42 one (the central baselines and FedAvg reproduce FLamby exactly on the local tests; the pooled test
    within one sample)."""
    import os

    from flamby_flare.processes import descendants
    from flamby_flare.reference import load_reference
    from tests.conftest import reference_dir
    from tests.test_interrupts import alive

    out = tmp_path / "results"
    cmd = [
        sys.executable,
        "-m",
        "flamby_flare.cli",
        "benchmark",
        "--dataset",
        "fed_heart_disease",
        "--seed",
        "42",
        "--strategy",
        "fedavg",
        "--jobs",
        "1",
        "--data-root",
        str(data_root),
        "--out",
        str(out),
    ]
    results = out / "fed_heart_disease" / "results.csv"
    log = out / "fed_heart_disease" / "runs" / "b0" / "server" / "log.txt"
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, text=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and "round 3/15" in log.read_text(errors="replace"):
            break
        time.sleep(0.1)
    started = descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    interrupted = time.monotonic()
    printed = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130 and time.monotonic() - interrupted < 20, printed[-2000:]
    assert printed.rstrip().endswith(f"finished cells are in {results}, and the same command runs the others")
    time.sleep(0.5)
    assert len(started) >= 3 and not alive(started)  # the simulator, its server, its forkserver and site workers
    # the central cells train beside the simulator job: any of them may be done, FedAvg not yet
    done = set(pd.read_csv(results)["Method"]) if results.is_file() else set()
    assert done <= {"Pooled Training", "Local 0", "Local 1", "Local 2", "Local 3"}, (
        "the kill should land while FedAvg runs"
    )
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-2000:]
    assert f"6 cells ({len(done)} already done)" in rerun.stdout
    final = pd.read_csv(results)
    key = ["Method", "seed", "Test"]
    assert (
        not final.duplicated(key).any() and len(final) == 6 * 5
    )  # (pooled + 4 locals + FedAvg) x (4 local tests + pooled)
    ref = load_reference(reference_dir(), "fed_heart_disease")
    merged = final.merge(ref[ref.seed == 42], on=key, suffixes=("", "_flamby"))
    assert len(merged) == len(final)
    local = merged["Test"].str.startswith("client_test")
    np.testing.assert_array_equal(merged.loc[local, "Metric"], merged.loc[local, "Metric_flamby"])
    n_pooled_test = 254
    np.testing.assert_allclose(
        merged.loc[~local, "Metric"], merged.loc[~local, "Metric_flamby"], atol=1 / n_pooled_test + 1e-12
    )


def test_plan_follows_flamby_protocol():
    cells = plan_cells("fed_heart_disease", [42, 43], ["fedavg", "fedyogi"])
    assert [c.method for c in cells[:7]] == [
        "Pooled Training",
        "Local 0",
        "Local 1",
        "Local 2",
        "Local 3",
        "FedAvg100",
        "FedYogi100",
    ]
    assert len(cells) == 14
    yogi = cells[6].hyperparameters
    assert (yogi["learning_rate"], yogi["server_learning_rate"], yogi["tau"], yogi["nrounds"]) == (
        0.003162,
        0.01,
        1e-8,
        15,
    )


def test_central_divergence_is_detected(tcga_dir, monkeypatch):
    monkeypatch.setattr(
        fed_tcga_brca, "Optimizer", lambda params, lr: torch.optim.SGD(params, lr=1e38)
    )  # weights overflow float32
    with pytest.raises(Diverged) as info:
        train_central(fed_tcga_brca, tcga_dir, to_numpy_state(initial_model(fed_tcga_brca, 0)), seed=0)
    assert info.value.epoch == 1


@pytest.mark.simulator
def test_federated_cells_share_a_job_and_divergence_is_recorded(tmp_path, data_root):
    """Two cells in one simulator job: a diverging one (lr 1e38) stops early and is recorded as such;
    the next cell still runs to completion."""
    from dataclasses import replace

    base = [c for c in plan_cells("fed_tcga_brca", [3], ["fedavg"]) if c.strategy][0]
    bad = replace(base, hyperparameters={**base.hyperparameters, "learning_rate": 1e38, "nrounds": 3})
    good = replace(base, seed=4, hyperparameters={**base.hyperparameters, "nrounds": 1})
    got, rounds = {}, []
    run_federated(
        [bad, good],
        data_root,
        tmp_path,
        lambda cell, rows: got.setdefault(cell.seed, rows),
        on_round=lambda cell, *args: rounds.append((cell.seed, *args)),
    )
    # the rounds as they ended, from the log: the first with the job's start-up time, none after a divergence
    assert [(seed, n, total) for seed, n, total, _, _ in rounds] == [(3, 1, 3), (4, 1, 1)]
    assert rounds[0][3] is None and rounds[1][3] > 0  # the second: since the first's round, its validation between
    assert rounds[0][4] > 1 and rounds[1][4] is None
    assert {r["status"] for r in got[3]} == {"diverged"} and {r["diverged_at"] for r in got[3]} == {1}
    assert all(math.isnan(r["Metric"]) for r in got[3]) and len(got[3]) == 7
    assert {r["status"] for r in got[4]} == {"ok"}
    assert [r["Test"] for r in got[4]] == [f"client_test_{i}" for i in range(6)] + ["Pooled Test"]
    golden.check("benchmark/tcga_fedavg_seed4_1round", {r["Test"]: r["Metric"] for r in got[4]})
    # One job, two cells: their metric streams are kept apart by the cell's name.
    from flamby_flare.benchmark.runner import cell_dir
    from tests.simulator import read_streams

    (streams,) = [read_streams(d.parent) for d in tmp_path.rglob("tb_events")]
    good_mean = sum(r["Metric"] for r in got[4][:6]) / 6
    assert streams["server"][f"{cell_dir(good)}/test_c_index_mean"] == pytest.approx({1: good_mean}, rel=1e-6)
    assert f"{cell_dir(bad)}/test_c_index_mean" not in streams["server"]  # diverged: no result to stream
    assert list(streams["site-6"][f"{cell_dir(good)}/train_loss"]) == [1]
    # NVFlare's own per-task lines are left out of a benchmark job's logs, this project's kept
    server_log = next(tmp_path.rglob("server/log.txt")).read_text()
    assert "round 1/1: train loss" in server_log and "assigned task to client" not in server_log
    assert "fed_tcga_brca center 5" in next(tmp_path.rglob("site-6/log.txt")).read_text()


def _write_results(tmp_path, folder: str, rows: list[dict]):
    """``rows`` as the store writes them, in ``tmp_path/<folder>/results.csv``; returns ``tmp_path``."""
    (tmp_path / folder).mkdir(parents=True)
    pd.DataFrame(rows, columns=COLUMNS).to_csv(tmp_path / folder / "results.csv", index=False)
    return tmp_path


def _known_results(tmp_path):
    rows = []
    for seed, (a, b) in {1: (0.6, 0.8), 2: (0.7, 0.9), 3: (0.8, 1.0)}.items():
        rows += _cell_rows("FedAvg100", seed, {"client_test_0": a, "client_test_1": b, "Pooled Test": 0.0})
    rows += _cell_rows("Scaffold100", 1, {"client_test_0": 0.5, "client_test_1": 0.5, "Pooled Test": 0.5})
    rows += [
        dict(r, status="diverged", Metric=float("nan"), diverged_at=2)
        for r in _cell_rows("Scaffold100", 2, {"client_test_0": 0, "client_test_1": 0, "Pooled Test": 0})
    ]
    return _write_results(tmp_path, "fed_heart_disease", rows)


def test_report_numbers_on_a_known_csv(tmp_path):
    results = pd.read_csv(_known_results(tmp_path) / "fed_heart_disease" / "results.csv")
    table = compare("fed_heart_disease", summarize(results))
    avg = table.loc["FedAvg100"]
    assert avg["mean"] == pytest.approx(0.8) and avg["sd"] == pytest.approx(0.1) and avg["seeds"] == 3
    assert avg["flamby_mean"] == pytest.approx(0.685, abs=1e-4)  # FLamby's FedAvg100 on heart
    assert avg["difference"] == pytest.approx(0.8 - 0.685, abs=1e-4) and avg["in_band"] == "no"
    scaffold = table.loc["Scaffold100"]
    assert scaffold["seeds"] == 1 and scaffold["diverged"] == 1 and scaffold["mean"] == pytest.approx(0.5)


def test_report_files_and_figure(tmp_path):
    paths = write_report(_known_results(tmp_path), REPO.parent / "shared" / "reference")
    md = paths["md"].read_text()
    # FedAvg's seeds: sites (0.6, 0.8), (0.7, 0.9), (0.8, 1.0): the worst 0.7 on average, gap 0.2, spread 0.1
    assert (
        "| fed_heart_disease | FedAvg100 | 0.800 ± 0.100 | 3 | 0 | 0.685 ± 0.028 | +0.115 | no | 0.700 0.800 0.900 | 0.700 | 0.200 | 0.100 |"
        in md
    )
    report = pd.read_csv(paths["csv"]).set_index("method")
    assert report.loc["Scaffold100", ["worst", "gap", "spread"]].tolist() == pytest.approx(
        [0.5, 0.0, 0.0]
    )  # the diverged seed left out
    assert "| fed_heart_disease | Scaffold100 | 0.500 ± 0.000 | 1 | 1 |" in md
    assert set(pd.read_csv(paths["csv"])["method"]) == {"FedAvg100", "Scaffold100"}
    image = matplotlib.image.imread(paths["png"])
    assert image.shape[0] > 300 and image.shape[1] > 400
    assert matplotlib.image.imread(paths["sites_png"]).shape[0] > 200 and "![per site](report_sites.png)" in md


def test_the_figures_show_what_they_claim(tmp_path):
    """Bars from 0, FLamby's legend entry is its diamond (with its sd bar), the seeds of both sides in the
    title, a diverged label inside the axes; the heatmap holds the per-site means over seeds."""
    from matplotlib.container import ErrorbarContainer

    from flamby_flare.benchmark.report import benchmark_figure, per_site_means, sites_figure

    results = pd.read_csv(_known_results(tmp_path) / "fed_heart_disease" / "results.csv")
    table = compare("fed_heart_disease", summarize(results), REPO.parent / "shared" / "reference")
    (ax,) = benchmark_figure({"fed_heart_disease": table}).axes
    assert ax.get_ylim() == (0.0, 1.05)
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["pooled (ours)", "local (ours)", "federated (ours)", "FLamby"]
    flamby = legend.legend_handles[-1]
    assert flamby.get_marker() == "D" and flamby.get_color() == "#c44e52"
    (diamonds,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer) and c.lines[0] is not None]
    assert diamonds.lines[0].get_marker() == "D" and diamonds.lines[0].get_color() == "#c44e52" and diamonds.has_yerr
    assert ax.get_title() == "fed_heart_disease (seeds: ours 1 to 3, FLamby 5)"
    (label,) = [t for t in ax.texts if "diverged" in t.get_text()]
    assert label.get_text() == "1 diverged" and label.get_transform() == ax.get_xaxis_transform()
    assert 0 < label.get_position()[1] < 1 and label.get_position()[0] == list(table.index).index("Scaffold100")

    sites = per_site_means(results, "fed_heart_disease")
    assert list(sites.columns) == ["0: cleveland", "1: hungarian"]
    assert sites.loc["FedAvg100"].tolist() == pytest.approx([0.7, 0.9])
    assert sites.loc["Scaffold100"].tolist() == pytest.approx([0.5, 0.5])  # the diverged seed left out
    heat = sites_figure({"fed_heart_disease": sites}).axes[0]
    assert sorted(t.get_text() for t in heat.texts) == ["0.50", "0.50", "0.70", "0.90"]


@pytest.mark.parametrize(
    "dataset,method,center",
    [
        ("fed_heart_disease", "Pooled Training", -1),
        ("fed_heart_disease", "Local 2", 2),
        ("fed_tcga_brca", "Pooled Training", -1),
    ],
)
def test_central_baselines_reproduce_flamby_seed_for_seed(dataset, method, center, data_root):
    """FLamby's published Pooled/Local values per seed, to the last digit on every local test set; the
    pooled test set within one sample (FLamby concatenates centers in glob order, which changes the float32
    rounding of the pooled normalization statistics)."""
    from flamby_flare.datasets import get_dataset
    from flamby_flare.reference import load_reference

    module = get_dataset(dataset)
    ref = load_reference(REPO.parent / "shared" / "reference", dataset)
    n_pooled_test = len(module.FedClass(train=False, pooled=True, data_path=data_root / dataset))
    for seed in (42, 46):
        params = train_central(module, data_root / dataset, to_numpy_state(initial_model(module, seed)), seed, center)
        ours = evaluate_state(module, params, flamby_test_sets(module, data_root / dataset))
        published = ref[(ref.Method == method) & (ref.seed == seed)].set_index("Test")["Metric"]
        for test, value in published.items():
            tolerance = 1e-12 if test.startswith("client_test") else 1.0 / n_pooled_test + 1e-12
            assert ours[test] == pytest.approx(value, abs=tolerance), (seed, test)


@pytest.mark.parametrize("dataset,center", [("fed_heart_disease", 1), ("fed_tcga_brca", 5)])
def test_the_central_loop_without_a_dataloader_is_flambys_bit_for_bit(dataset, center, data_root, monkeypatch):
    """A tensor dataset trained with Adam takes the loop without a DataLoader or a torch optimizer; the same
    weights, bit for bit, as FLamby's DataLoader(shuffle=True) and torch.optim.Adam (for several epochs, so the
    global generator's draws line up epoch after epoch)."""
    from flamby_flare.benchmark import central
    from flamby_flare.datasets import get_dataset

    module = get_dataset(dataset)
    train_set = module.FedClass(center=center, train=True, data_path=data_root / dataset)
    assert isinstance(central._tensor_batches(train_set, 4, module.Optimizer), central._ShuffledTensorBatches)
    init = to_numpy_state(initial_model(module, 3))
    fast = train_central(module, data_root / dataset, init, seed=3, center=center)
    monkeypatch.setattr(central, "_tensor_batches", lambda *args: None)  # FLamby's loop
    flamby = train_central(module, data_root / dataset, init, seed=3, center=center)
    assert all(np.array_equal(fast[k], flamby[k]) for k in flamby) and module.Optimizer is torch.optim.Adam


def test_the_central_loop_keeps_flambys_for_anything_else(data_root):
    from flamby_flare.benchmark import central
    from flamby_flare.datasets import get_dataset

    module = get_dataset("fed_heart_disease")
    train_set = module.FedClass(center=0, train=True, data_path=data_root / "fed_heart_disease")
    assert central._tensor_batches(train_set, 4, torch.optim.AdamW) is None  # another optimizer
    augmented = type("Augmented", (type(train_set),), {"uses_batch_seed": True})
    assert central._tensor_batches(object.__new__(augmented), 4, torch.optim.Adam) is None
    assert (
        central._tensor_batches([(torch.zeros(2), torch.zeros(1))], 4, torch.optim.Adam) is None
    )  # not a tensor dataset


def test_adam_without_a_torch_optimizer_is_torchs_bit_for_bit():
    from flamby_flare.local_training import Adam

    torch.manual_seed(0)
    theirs = torch.nn.Sequential(torch.nn.Linear(13, 5), torch.nn.Tanh(), torch.nn.Linear(5, 1))
    ours = copy.deepcopy(theirs)
    frozen = list(ours.parameters())[-1]  # a parameter without a gradient is left as it is, by both
    optimizers = [(theirs, torch.optim.Adam(theirs.parameters(), lr=0.1)), (ours, Adam(ours.parameters(), lr=0.1))]
    for step in range(500):
        X, y = torch.randn(4, 13), torch.randn(4, 1)
        for model, optimizer in optimizers:
            optimizer.zero_grad()
            ((model(X) - y) ** 2).mean().backward()
            if step % 7 == 0:
                list(model.parameters())[-1].grad = None
            optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(theirs.parameters(), ours.parameters()))
    assert frozen is list(ours.parameters())[-1]


def test_central_cells_build_no_torch_optimizer(data_root):
    """Its first one imports torch._dynamo (1 s of the benchmark's start), which the Adam above avoids."""
    code = (
        "import sys; from pathlib import Path; from flamby_flare.benchmark.central import train_central;"
        "from flamby_flare.datasets import fed_heart_disease as m; from flamby_flare.model_state import initial_model, to_numpy_state;"
        f"train_central(m, Path({str(data_root / 'fed_heart_disease')!r}), to_numpy_state(initial_model(m, 1)), 1, 2);"
        "print('torch._dynamo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_the_benchmark_starts_its_simulator_jobs_before_importing_torch():
    """Planning, the store and the jobs need no torch: the simulators' start-up runs beside its import."""
    code = (
        "import sys; from pathlib import Path; from flamby_flare.benchmark import runner;"
        "cells = [c for c in runner.plan_cells('fed_heart_disease', [1], ['fedavg', 'scaffold']) if c.strategy];"
        "runner.write_batch_job(cells, Path(sys.argv[1]) / 'job'); runner.ResultStore(Path(sys.argv[1]) / 'r.csv', 5);"
        "print(sorted(m for m in ('torch', 'pandas') if m in sys.modules))"
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", code, tmp], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.stdout.strip() == "[]", out.stderr[-2000:]
    run = inspect.getsource(runner._sweep)
    assert run.index("event.wait(") < run.index("import torch") < run.index("here.submit(central_task")


def test_every_row_names_its_optimizer(data_root):
    from flamby_flare.benchmark.runner import run_central

    cell = [c for c in plan_cells("fed_heart_disease", [5], []) if c.method == "Local 2"][0]
    rows = run_central(cell, data_root / "fed_heart_disease")
    assert {r["optimizer_class"] for r in rows} == {str(torch.optim.Adam)} and len(rows) == 5


def test_a_central_cell_is_the_same_while_another_thread_builds_and_evaluates_models(tcga_dir):
    """``flamby-flare benchmark`` trains central cells beside threads that build initial models and
    evaluate (both draw from torch's global RNG): the cell's result must not depend on them."""
    import threading

    init = to_numpy_state(initial_model(fed_tcga_brca, 1))
    alone = train_central(fed_tcga_brca, tcga_dir, init, seed=1, center=0)
    stop = threading.Event()

    def churn():
        while not stop.is_set():
            evaluate_state(fed_tcga_brca, init, {})
            initial_model(fed_tcga_brca, 7)

    other = threading.Thread(target=churn)
    other.start()
    try:
        beside = [train_central(fed_tcga_brca, tcga_dir, init, seed=1, center=0) for _ in range(3)]
    finally:
        stop.set()
        other.join()
    for params in beside:
        assert all(np.array_equal(params[k], alone[k]) for k in alone)


def test_dp_plan_is_flambys_grid_with_one_job_per_setting():
    grid = DPGrid((0.1, 1.0), (0.1, 1e-4))
    cells = plan_cells("fed_heart_disease", [42, 43], ["fedavg"], grid)
    assert len(cells) == 2 * (1 + 4) and {c.method for c in cells} == {"FedAvg100"}
    assert cells[0].dp_sgd is None
    assert [c.dp_sgd for c in cells[1:5]] == [
        {"max_grad_norm": 1.1, "target_epsilon": e, "delta": d} for e in (0.1, 1.0) for d in (0.1, 1e-4)
    ]
    batches = split_batches(cells, jobs=2)  # the no-DP cells are dealt over the 2 jobs; a DP setting is one job
    assert [len(b) for b in batches] == [1, 1, 2, 2, 2, 2]
    assert all(len({str(c.dp_sgd) for c in b}) == 1 for b in batches)


@pytest.mark.simulator
def test_dp_cells_record_what_each_site_spent(tmp_path, data_root):
    """Two DP cells (two seeds) in one simulator job, 2 rounds: each local test's row carries its site's
    ledger, and the budget holds."""
    from dataclasses import replace

    cells = [
        replace(c, hyperparameters={**c.hyperparameters, "nrounds": 2})
        for c in plan_cells("fed_heart_disease", [1, 2], ["fedavg"], DPGrid((2.0,), (1e-3,)))
        if c.dp_sgd
    ]
    stale = tmp_path / "runs" / "b0" / "server" / "simulate_job" / cell_dir(cells[0])  # a previous sweep's leftovers
    stale.mkdir(parents=True)
    (stale / "summary.json").write_text(json.dumps({"per_site": {"site-1": 9.0}, "diverged_at_round": 1}))
    got = {}
    run_federated(cells, data_root, tmp_path, lambda cell, rows: got.setdefault(cell.seed, rows))
    for seed in (1, 2):
        rows = {r["Test"]: r for r in got[seed]}
        assert len(rows) == 5 and all(r["Metric"] != 9.0 for r in rows.values())
        assert rows["Pooled Test"]["dp_sgd_epsilon"] == ""
        for i in range(4):
            row = rows[f"client_test_{i}"]
            assert 1.9 < row["dp_sgd_epsilon"] <= 2.0 and row["dp_sgd_delta"] == 1e-3 and row["dp_sgd_clip_norm"] == 1.1
            assert row["dp_target_epsilon"] == 2.0 and row["status"] == "ok"
    # a smaller site needs more noise for the same budget
    assert got[1][2]["dp_sgd_noise_multiplier"] > got[1][0]["dp_sgd_noise_multiplier"]
    golden.check(
        "benchmark/heart_fedavg_dp_eps2_seeds1_2",
        {
            seed: {r["Test"]: [r["Metric"], r["dp_sgd_epsilon"], r["dp_sgd_noise_multiplier"]] for r in got[seed]}
            for seed in (1, 2)
        },
    )


def _known_dp_results(tmp_path):
    rows = []
    for seed, values in {42: (0.70, 0.60, 0.50), 43: (0.72, 0.64, 0.52)}.items():
        for (eps, delta), v in zip([(None, None), (1.0, 0.1), (1.0, 0.001)], values):
            dp = {"dp_target_epsilon": eps, "dp_target_delta": delta, "dp_max_grad_norm": eps and 1.1}
            spent = {"dp_sgd_epsilon": 0.99, "dp_sgd_noise_multiplier": 2.0} if eps else {}
            rows += [
                dict(r, **dp, **spent)
                for r in _cell_rows("FedAvg100", seed, {"client_test_0": v, "client_test_1": v, "Pooled Test": 0})
            ]
    return _write_results(tmp_path, "fed_heart_disease_dp", rows)


def test_dp_report_numbers_and_figure(tmp_path):
    results = pd.read_csv(_known_dp_results(tmp_path) / "fed_heart_disease_dp" / "results.csv")
    table = compare_dp("fed_heart_disease", summarize_dp(results)).set_index(["epsilon", "delta"], drop=False)
    assert list(table["epsilon"].fillna(0)) == [0, 1.0, 1.0] and list(table["delta"].fillna(0)) == [0, 0.1, 0.001]
    row = table.iloc[1]
    assert row["mean"] == pytest.approx(0.62) and row["sd"] == pytest.approx(np.std([0.6, 0.64], ddof=1))
    assert row["flamby_mean"] == pytest.approx(0.7031) and row["in_band"] == "no" and row["spent_epsilon"] == 0.99
    assert table.iloc[0]["flamby_mean"] == pytest.approx(0.7125) and table.iloc[0]["in_band"] == "yes"
    paths = write_report(tmp_path, REPO.parent / "shared" / "reference")
    md = paths["md"].read_text()
    assert "| 1 | 0.001 | 0.510 ± 0.014 | 2 | 0.99 | 2-2 | 0.702 ± 0.044 | -0.192 | no | -0.200 | -0.011 |" in md
    image = matplotlib.image.imread(paths["dp_fed_heart_disease"])
    assert image.shape[0] > 300 and image.shape[1] > 400


def test_personalization_plan_runs_every_variant_in_one_job(tmp_path):
    cells = plan_cells(
        "fed_heart_disease", [42, 43], ["fedavg"], personalization=[{"method": "finetune"}, {"method": "ditto"}]
    )
    assert [(c.seed, c.hyperparameters["personalization"]) for c in cells] == [
        (42, "finetune100"),
        (42, "ditto(lambda=0.1)"),
        (43, "finetune100"),
        (43, "ditto(lambda=0.1)"),
    ]
    assert {c.hyperparameters["learning_rate"] for c in cells} == {0.00316227}  # FLamby's personalization example
    assert split_batches(cells, jobs=1) == [cells]
    server = json.loads((write_batch_job(cells, tmp_path / "job") / "app/config/config_fed_server.json").read_text())
    ids = [w["id"] for w in server["workflows"]]
    assert len(set(ids)) == 4 and server["workflows"][1]["args"]["personalization"]["method"] == "ditto"


def test_personalization_report_numbers_and_figure(tmp_path):
    rows = []
    for seed, (g, ft, dt) in {42: (0.70, 0.74, 0.80), 43: (0.72, 0.76, 0.84)}.items():
        for label, p in (("finetune100", ft), ("ditto(lambda=0.1)", dt)):
            rows += [
                dict(r, personalization=label, Metric_personalized=p if r["Test"] != "Pooled Test" else "")
                for r in _cell_rows("FedAvg100", seed, {"client_test_0": g, "client_test_1": g, "Pooled Test": 0.5})
            ]
    results = _write_results(tmp_path, "fed_heart_disease_perso", rows) / "fed_heart_disease_perso" / "results.csv"
    table = compare_perso("fed_heart_disease", summarize_perso(pd.read_csv(results))).set_index("personalization")
    ft = table.loc["finetune100"]
    assert (ft["global_mean"], ft["personalized_mean"], ft["gain"]) == pytest.approx((0.71, 0.75, 0.04))
    assert ft["flamby_global"] == pytest.approx(0.7178) and ft["flamby_personalized"] == pytest.approx(0.7351)
    assert ft["global_in_band"] == "yes" and ft["personalized_in_band"] == "yes"
    assert np.isnan(table.loc["ditto(lambda=0.1)", "flamby_personalized"])
    assert (ft["global_worst"], ft["personalized_worst"]) == pytest.approx((0.71, 0.75))  # both sites alike here
    paths = write_report(tmp_path, REPO.parent / "shared" / "reference")
    assert (
        "| FedAvg100 | finetune100 | 2 | 0.710 ± 0.014 | 0.750 ± 0.014 | +0.040 | 0.718 ± 0.016 | 0.735 ± 0.009 | yes / yes |"
        in paths["md"].read_text()
    )
    assert matplotlib.image.imread(paths["perso_fed_heart_disease"]).shape[1] > 400


def test_the_estimate_models_central_and_federated_cells_apart():
    from flamby_flare.benchmark.eta import SweepEstimate

    estimate = SweepEstimate(central=3, rounds=30, jobs=2, parallel=1)
    assert estimate.describe() == "time left: known after a central cell and a federated round"
    estimate.central_done(2.0)
    assert estimate.seconds_left() is None and estimate.describe() == "time left: known after a federated round"
    estimate.job_started(20.0)  # a job's first round, 20 s after its start
    estimate.round_done(None)
    assert estimate.seconds_left() is None  # no round-to-round time yet
    estimate.round_done(0.5)
    estimate.round_done(1.5)
    # side by side: the longer of 2 central x 2 s and 27 rounds x median(0.5, 1.5) + 1 job to start x 20 s
    assert estimate.seconds_left() == pytest.approx(27 * 1.0 + 20.0)
    estimate.cell_skipped(7)  # a cell diverged with 7 of its rounds not run
    assert estimate.seconds_left() == pytest.approx(20 * 1.0 + 20.0)
    assert estimate.describe() == "~0m40s left"
    for _ in range(20):
        estimate.round_done(1.0)
    estimate.job_started(20.0)
    assert estimate.seconds_left() == pytest.approx(2 * 2.0)  # only the central cells are left
    assert SweepEstimate(0, 0, 0, 2).describe() == "~0m00s left"


def test_progress_draws_a_bar_on_a_terminal_and_lines_in_a_log(capsys, monkeypatch):
    from flamby_flare.progress import Progress

    lines = []
    progress = Progress("cells", 20, lines.append, unit="cell")
    for done in range(1, 21):
        progress(done)
    assert lines == [f"  cells: {d}/20 ({0} s)" for d in range(2, 21, 2)]
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    monkeypatch.setenv("COLUMNS", "200")  # the bar's width (a test runner's terminal may be narrow)
    progress = Progress("ISIC_2019_Training_Input.zip", 3 << 20, unit="B")
    progress(1 << 20)
    progress.note("round 3/15")
    progress(3 << 20)
    err = capsys.readouterr().err
    assert "ISIC_2019_Training_Input.zip" in err and "3.00M/3.00M" in err and "round 3/15" in err and "B/s" in err


def test_the_report_gives_each_methods_traffic_and_draws_accuracy_against_bytes(tmp_path):
    """FedAvg's sites moved 4,000 + 6,000 bytes in 2 rounds (5 KB a round) and trained 0.4 s (0.2 s a
    round); Scaffold twice the bytes; the central cells have none."""
    rows = []
    for method, scale in (("FedAvg100", 1), ("Scaffold100", 2)):
        for seed, value in ((1, 0.6), (2, 0.8)):
            traffic = {"received_bytes": 4000 * scale, "sent_bytes": 6000 * scale, "train_s": 0.4, "train_rounds": 2}
            rows += _cell_rows(method, seed, {"client_test_0": value, "client_test_1": value}, **traffic)
            rows += _cell_rows(method, seed, {"Pooled Test": value})
    rows += _cell_rows("Pooled Training", 1, {"client_test_0": 0.9, "client_test_1": 0.9, "Pooled Test": 0.9})
    paths = write_report(_write_results(tmp_path, "fed_heart_disease", rows), REPO.parent / "shared" / "reference")
    report = pd.read_csv(paths["csv"]).set_index("method")
    assert report.loc["FedAvg100", ["bytes_per_round", "train_s_per_round"]].tolist() == pytest.approx([5000, 0.2])
    assert report.loc["Scaffold100", "bytes_per_round"] == pytest.approx(10000)
    assert math.isnan(report.loc["Pooled Training", "bytes_per_round"])
    md = paths["md"].read_text()
    assert "| 5.0 | 0.200 |" in md and "| 10.0 | 0.200 |" in md and "![traffic](report_traffic.png)" in md

    from flamby_flare.benchmark.report import traffic_figure

    (ax,) = traffic_figure(
        {
            "fed_heart_disease": compare(
                "fed_heart_disease", summarize(pd.read_csv(tmp_path / "fed_heart_disease" / "results.csv"))
            )
        }
    ).axes
    points = {c.get_label(): tuple(c.lines[0].get_xydata()[0]) for c in ax.containers}  # errorbars: a point ± sd
    assert points == {"FedAvg": pytest.approx((5.0, 0.7)), "Scaffold": pytest.approx((10.0, 0.7))}
    assert ax.get_xscale() == "linear" and matplotlib.image.imread(paths["traffic_png"]).shape[0] > 200  # 2x apart


def test_a_personalized_strategys_personalized_metric_sits_beside_its_global_one(tmp_path):
    rows = []
    for seed, (a, b) in ((1, (0.6, 0.7)), (2, (0.8, 0.9))):
        rows += [
            dict(r, Metric_personalized=p)
            for r, p in zip(_cell_rows("MRMTL100", seed, {"client_test_0": 0.5, "client_test_1": 0.5}), (a, b))
        ]
    paths = write_report(_write_results(tmp_path, "fed_heart_disease", rows), REPO.parent / "shared" / "reference")
    report = pd.read_csv(paths["csv"]).set_index("method")
    # per seed: means 0.65 and 0.85, worst sites 0.6 and 0.8
    assert report.loc["MRMTL100", ["personalized_mean", "personalized_worst"]].tolist() == pytest.approx([0.75, 0.7])
    assert "| 0.750 ± 0.141 (0.700) |" in paths["md"].read_text()


def test_the_traffic_figure_turns_logarithmic_with_plain_labels_past_a_tenfold_range():
    from flamby_flare.benchmark.report import traffic_figure

    table = pd.DataFrame(
        {"mean": [0.7, 0.68], "sd": [0.02, 0.03], "bytes_per_round": [2e8, 1e6]}, index=["FedAvg100", "FedAvg100 fp16"]
    )
    fig = traffic_figure({"fed_ixi": table})
    (ax,) = fig.axes
    fig.canvas.draw()
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert ax.get_xscale() == "log" and "10,000" in labels and not any("e" in label for label in labels)


def test_benchmark_arguments_are_checked_and_one_sweep_at_a_time(tmp_path, data_root, capsys):
    """A seed or strategy given twice, a seed outside 0 .. 2^32-1, an --out that is a file, a second sweep on the
    same --out while one runs: each refused in one line before any work."""
    import fcntl

    from flamby_flare.cli import main

    base = ["benchmark", "--dataset", "fed_heart_disease", "--data-root", str(data_root)]
    (tmp_path / "file").write_text("")
    out = ["--out", str(tmp_path / "out")]
    for extra, message in (
        (["--seed", "42", "42", "--strategy", "fedavg", *out], "--seed 42 is given twice: each cell runs once"),
        (
            ["--seed", "1", "--strategy", "fedavg", "fedavg", *out],
            "--strategy fedavg is given twice: each cell runs once",
        ),
        (
            ["--seed", "-1", "--strategy", "fedavg", *out],
            "--seed must be integers 0 .. 2^32-1 (numpy's and torch's seeds), got -1",
        ),
        (
            ["--seed", "1", "--strategy", "fedavg", "--out", str(tmp_path / "file")],
            f"the benchmark --out folder {tmp_path / 'file' / 'fed_heart_disease'} is not writable",
        ),
    ):
        assert main([*base, *extra]) == 1
        assert capsys.readouterr().err.startswith(f"error: {message}")
    assert not (tmp_path / "out").exists()
    work = tmp_path / "busy" / "fed_heart_disease"
    work.mkdir(parents=True)
    with open(work / ".lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another sweep runs there
        assert main([*base, "--seed", "1", "--strategy", "fedavg", "--out", str(tmp_path / "busy")]) == 1
    assert (
        capsys.readouterr().err
        == f"error: another benchmark is running in {work}: wait for it, or give this one another --out\n"
    )
    assert not (work / "results.csv").exists()
