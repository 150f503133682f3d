"""``flamby-flare benchmark``: FLamby's protocol for one dataset over seeds (reference §3), or its DP
experiment (``dp_grid``: each strategy without DP and with DP-SGD for every (epsilon, delta) of the grid).

Per seed one shared initial model (``set_seed(seed); Baseline()``); the Pooled and one Local baseline
per center, trained centrally (not federated); then each strategy as a real NVFlare federated run with
the dataset's FLamby hyperparameters. Every model is evaluated on every center's local test set and on
the pooled test set. Each cell's rows are appended to the store as soon as it ends.

Speed: the federated cells of a sweep are split into ``--jobs`` NVFlare simulator jobs; each job lists
its cells as consecutive server workflows, so the sites' processes and NVFlare's start-up are paid once
per job instead of once per cell (about 17 s of a 25 s heart run). Each cell is still a complete
federated run: its own controller, seed, rounds of tasks to the sites, validation and results. Up to
``--jobs`` simulator jobs run at a time, and up to ``--jobs`` central cells train in this process meanwhile
(a simulator job mostly waits on its processes: heart's 2-core run keeps the cores 40-45 % busy).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

from flamby_flare.benchmark.central import POOLED, Diverged, train_central
from flamby_flare.benchmark.eta import SweepEstimate
from flamby_flare.benchmark.store import ResultStore
from flamby_flare.datasets import get_dataset
from flamby_flare.download import locate_dataset
from flamby_flare.errors import FlambyFlareError
from flamby_flare.hyperparameters import NUM_UPDATES, run_hyperparameters
from flamby_flare.jobs import job_files, write_files
from flamby_flare.model_state import NumpyState
from flamby_flare.paths import check_writable, resolve_data_root
from flamby_flare.personalization import Personalization
from flamby_flare.processes import stop_tree
from flamby_flare.progress import Progress
from flamby_flare.results import COMMUNICATION_COLUMNS, PRIVACY_COLUMNS, result_rows
from flamby_flare.simulator import (
    RACE_ATTEMPTS,
    lost_to_the_port_race,
    prepare_workspace,
    write_quiet_log_config,
)
from flamby_flare.simulator import (
    command as simulator_command,
)
from flamby_flare.sites import center_of
from flamby_flare.strategies.base import fields_of, get_strategy, method_label, strategy_names

# torch, and what imports it, is imported once the simulator jobs are started: their start-up (seconds) then
# runs beside this process's own imports (1.2 s) instead of after them


@dataclass(frozen=True)
class Cell:
    dataset: str
    seed: int
    method: str  # FLamby's label: "Pooled Training", "Local 2", "FedAvg100", ...
    strategy: str | None = None  # None for the central baselines
    center: int = POOLED
    hyperparameters: dict = field(default_factory=dict, hash=False, compare=False)
    personalization: dict | None = field(default=None, hash=False, compare=False)  # the controller's argument
    weights: str | None = field(default=None, hash=False, compare=False)  # the initial model's file (ImageNet)

    def key_row(self) -> dict:
        return {"Method": self.method, "seed": self.seed, **self.hyperparameters}

    @property
    def dp_sgd(self) -> dict | None:
        """The sites' DP-SGD settings (None: no DP)."""
        hp = self.hyperparameters
        if hp.get("dp_target_epsilon") is None:
            return None
        return {
            "max_grad_norm": hp["dp_max_grad_norm"],
            "target_epsilon": hp["dp_target_epsilon"],
            "delta": hp["dp_target_delta"],
        }


@dataclass(frozen=True)
class DPGrid:
    """FLamby's DP experiment: DP-SGD with these target epsilons x deltas (and a no-DP run) per seed."""

    epsilons: tuple[float, ...]
    deltas: tuple[float, ...]
    max_grad_norm: float = 1.1

    def settings(self) -> list[dict]:
        none = {"dp_target_epsilon": None, "dp_target_delta": None, "dp_max_grad_norm": None}
        return [none] + [
            {"dp_target_epsilon": e, "dp_target_delta": d, "dp_max_grad_norm": self.max_grad_norm}
            for e in self.epsilons
            for d in self.deltas
        ]


# FLamby's personalization example trains FedAvg at these lrs (reference §4), not the benchmark's.
PERSONALIZATION_LR = {"fed_heart_disease": 0.00316227, "fed_camelyon16": 0.316227, "fed_isic2019": 0.01}


def plan_cells(
    dataset: str,
    seeds: list[int],
    strategies: list[str],
    dp_grid: DPGrid | None = None,
    personalization: list[dict] | None = None,
) -> list[Cell]:
    """The sweep's cells: per seed the pooled and local baselines and every strategy; with ``dp_grid``
    every strategy under each of the grid's DP settings; with ``personalization`` every strategy with each
    personalization (at FLamby's personalization-example lr), each cell reporting global and personalized."""
    module = get_dataset(dataset)
    central = {"learning_rate": module.LR}  # and the dataset's optimizer (its class: run_central's rows)
    # each strategy's variants: (hyperparameters on top of FLamby's, the controller's personalization)
    if dp_grid is not None:
        variants = [(dp, None) for dp in dp_grid.settings()]
    elif personalization:
        lr = {"learning_rate": PERSONALIZATION_LR[dataset]} if dataset in PERSONALIZATION_LR else {}
        variants = [
            ({**lr, "personalization": p.label}, p.to_dict()) for p in map(Personalization.from_dict, personalization)
        ]
    else:
        variants = [({}, None)]
    cells = []
    for seed in seeds:
        if dp_grid is None and not personalization:
            cells.append(Cell(dataset, seed, "Pooled Training", hyperparameters=central))
            cells += [
                Cell(dataset, seed, f"Local {c}", center=c, hyperparameters=central) for c in range(module.NUM_CLIENTS)
            ]
        for strategy in strategies:
            hp = {
                **run_hyperparameters(dataset, strategy),
                "num_updates": NUM_UPDATES,  # and SGD (the rows' optimizer_class)
                "nrounds": module.get_nb_max_rounds(NUM_UPDATES),
            }
            if strategy in ("fedadam", "fedyogi", "fedadagrad"):
                hp.update(beta1=0.9, beta2=0.999)
            method = method_label(strategy, NUM_UPDATES)
            cells += [
                Cell(dataset, seed, method, strategy, hyperparameters={**hp, **extra}, personalization=perso)
                for extra, perso in variants
            ]
    return cells


def _rows(
    cell: Cell, metrics: dict[str, float], seconds: float, diverged_at: int | None, optimizer: type
) -> list[dict]:
    return [
        {
            "Test": test,
            "Metric": value,
            **cell.key_row(),
            "optimizer_class": str(optimizer),
            "wall_time_s": round(seconds, 3),
            "status": "diverged" if diverged_at is not None else "ok",
            "diverged_at": diverged_at if diverged_at is not None else "",
        }
        for test, value in metrics.items()
    ]


def run_central(cell: Cell, data_dir: Path, stop: threading.Event | None = None) -> list[dict]:
    from flamby_flare.evaluation import evaluate_state, flamby_test_sets
    from flamby_flare.model_state import initial_model, to_numpy_state

    module = get_dataset(cell.dataset)
    start = time.monotonic()
    init = to_numpy_state(initial_model(module, cell.seed, cell.weights))
    tests = flamby_test_sets(module, data_dir)
    try:
        params = train_central(module, data_dir, init, cell.seed, cell.center, stop=stop)
        metrics, diverged = evaluate_state(module, params, tests), None
    except Diverged as exc:
        metrics, diverged = dict.fromkeys(tests, float("nan")), exc.epoch
    return _rows(cell, metrics, time.monotonic() - start, diverged, module.Optimizer)


def write_batch_job(cells: list[Cell], folder: Path) -> Path:
    """One NVFlare job whose workflows are ``cells`` (same dataset), run one after the other by the server:
    every cell is a complete federated run of its strategy; the sites' processes start only once."""
    dataset = cells[0].dataset
    if len({json.dumps(c.dp_sgd, sort_keys=True) for c in cells}) > 1:
        raise ValueError("the cells of one job must share their DP settings (they are the sites' executor's)")
    files = job_files(dataset, cells[0].strategy, dp_sgd=cells[0].dp_sgd)
    server = json.loads(files["app/config/config_fed_server.json"])
    base_args = server["workflows"][0]["args"]
    server["workflows"] = [
        {
            "id": cell_dir(cell).replace(".", "_"),
            "path": f"controllers.{get_strategy(cell.strategy).label}",
            "args": {
                **{k: base_args[k] for k in ("dataset", "batch_size", "train_timeout", "validate_timeout")},
                **{
                    k: v
                    for k, v in cell.hyperparameters.items()
                    if k in ("learning_rate", "num_updates", *fields_of(get_strategy(cell.strategy)))
                },
                "num_rounds": cell.hyperparameters["nrounds"],
                "seed": cell.seed,
                "results_dir": cell_dir(cell),
                **({"personalization": cell.personalization} if cell.personalization else {}),
                **({"pretrained_weights": cell.weights} if cell.weights else {"pretrained": False}),
            },
        }
        for cell in cells
    ]
    files["app/config/config_fed_server.json"] = json.dumps(server, indent=2) + "\n"
    return write_files(folder, files)


def cell_dir(cell: Cell) -> str:
    dp = cell.dp_sgd
    label = cell.hyperparameters.get("personalization") or ""
    return (
        f"{cell.method}_s{cell.seed}"
        + (f"_eps{dp['target_epsilon']:g}_delta{dp['delta']:g}" if dp else "")
        + ("_" + re.sub(r"[^A-Za-z0-9.]+", "_", label).strip("_") if label else "")
    )


def _federated_rows(cell: Cell, out: Path, data_dir: Path, seconds: float) -> list[dict]:
    import torch

    from flamby_flare.evaluation import POOLED_TEST, evaluate_state, flamby_test_sets

    module = get_dataset(cell.dataset)
    summary = json.loads((out / "summary.json").read_text())
    metrics = {f"client_test_{center_of(site)}": v for site, v in summary["per_site"].items()}
    diverged = summary.get("diverged_at_round")
    if diverged is None:  # the sites evaluated the local tests; the pooled one is evaluated here
        checkpoint = torch.load(out / "FL_global_model.pt")
        params: NumpyState = {k: v.numpy() for k, v in checkpoint["model"].items()}
        pooled = {POOLED_TEST: flamby_test_sets(module, data_dir)[POOLED_TEST]}
        metrics.update(evaluate_state(module, params, pooled))
    else:
        metrics[POOLED_TEST] = float("nan")
    rows = _rows(cell, metrics, seconds, diverged, torch.optim.SGD)  # the sites' optimizer
    # each local test's row carries its site's privacy ledger, personalized metric and traffic (the pooled test's: none)
    site_columns = PRIVACY_COLUMNS + ("Metric_personalized",) + COMMUNICATION_COLUMNS
    by_test = {r["Test"]: {k: r[k] for k in site_columns} for r in result_rows(summary)}
    for row in rows:
        row.update(by_test.get(row["Test"], dict.fromkeys(site_columns, "")))
    return rows


# the controller's, in a benchmark job, after the log's timestamp: rounds are timed by it, not by when they are read
_ROUND_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*\[([^\]]+)\] round (\d+)/(\d+): train loss")


def run_federated(
    cells: list[Cell],
    data_root: Path,
    work: Path,
    on_cell: Callable[[Cell, list[dict]], None],
    batch: str = "b0",
    on_round: Callable[[Cell, int, int, float | None, float | None], None] | None = None,
    started: threading.Event | None = None,
    stop: threading.Event | None = None,
    attempts: int = RACE_ATTEMPTS,
) -> None:
    """Run ``cells`` (one dataset) as one simulator job; ``on_cell(cell, rows)`` is called as each cell ends,
    ``on_round(cell, round, rounds, seconds since its previous round, seconds since the job started)`` as
    each of its rounds ends (from the simulator's log; the second time only for the job's first round);
    ``started`` is set once the simulator's process is. Once ``stop`` is set, the simulator and every process
    it started are stopped and ``KeyboardInterrupt`` is raised. A job a site worker lost to NVFlare's port race
    (``flamby_flare.simulator.PORT_RACE``) is stopped and its remaining cells run again, ``attempts`` times in all."""
    module = get_dataset(cells[0].dataset)
    data_dir = locate_dataset(module.SOURCE, data_root / cells[0].dataset)
    job = write_batch_job(cells, work / "jobs" / batch)
    ws = work / "runs" / batch
    shutil.rmtree(ws, ignore_errors=True)  # a previous sweep's results there must not pass for this one's
    ws.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FLAMBY_FLARE_DATA": str(data_root), "OMP_NUM_THREADS": "1"}
    remaining, raced = list(cells), False
    last = launched = time.monotonic()
    previous_round: float | None = None
    log_config = write_quiet_log_config(work / "jobs" / f"{batch}_log_config.json")  # its rounds are ours to log
    with open(f"{ws}.log", "w") as log, open(f"{ws}.log") as tail:
        proc = subprocess.Popen(
            simulator_command(job, prepare_workspace(ws), module.NUM_CLIENTS, log_config),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # stopped by stop_tree, not the terminal
        )
        if started is not None:
            started.set()
        try:
            pending, by_dir = "", {cell_dir(c): c for c in cells}
            while remaining:
                if stop is not None and stop.is_set():
                    raise KeyboardInterrupt
                out = ws / "server" / "simulate_job" / cell_dir(remaining[0])
                finished = (out / "summary.json").is_file()
                if on_round:  # the running cell's rounds, as they end (whole lines only)
                    *lines, pending = (pending + tail.read()).split("\n")
                    for match in filter(None, map(_ROUND_LINE.search, lines)):
                        stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                        cell, number = by_dir.get(match.group(2)), int(match.group(3))
                        if cell is None:
                            continue
                        since = (
                            None if previous_round is None else stamp - previous_round
                        )  # a later cell's first: with the validation before it
                        first = time.monotonic() - launched if number == 1 and cell is cells[0] else None
                        on_round(cell, number, int(match.group(4)), since, first)
                        previous_round = stamp
                if finished:
                    cell = remaining.pop(0)
                    now = time.monotonic()
                    on_cell(cell, _federated_rows(cell, out, data_dir, now - last))
                    last = now
                elif proc.poll() is not None:
                    break
                elif lost_to_the_port_race(ws):
                    raced = True
                    break
                else:
                    time.sleep(0.05)
        finally:
            if remaining:
                stop_tree(proc)  # its site workers too (sessions of their own)
            proc.wait()
    if remaining and raced and attempts > 1:
        print(
            f"[flamby-flare] {batch}: a site worker lost NVFlare's port race (another process took its port): "
            f"running its {len(remaining)} remaining cell(s) again",
            file=sys.stderr,
            flush=True,
        )
        return run_federated(remaining, data_root, work, on_cell, batch, on_round, None, stop, attempts - 1)
    if remaining:
        raise FlambyFlareError(
            f"the simulator stopped (exit {proc.returncode}) before {', '.join(cell_dir(c) for c in remaining)}; log: {ws}.log"
        )


def split_batches(cells: list[Cell], jobs: int) -> list[list[Cell]]:
    """Federated cells -> simulator jobs: cells with the same DP settings (the sites' executor's) share a
    job; without DP the cells are dealt round-robin into ``jobs`` jobs."""
    groups: dict[str, list[Cell]] = {}
    for cell in cells:
        groups.setdefault(json.dumps(cell.dp_sgd, sort_keys=True), []).append(cell)
    batches = []
    for key, group in groups.items():
        parts = max(1, jobs) if key == "null" else 1
        batches += [group[i::parts] for i in range(parts) if group[i::parts]]
    return batches


def _yield_cpu() -> None:
    """This thread at the lowest CPU priority (Linux's niceness is per thread): the simulator jobs' start-up
    and rounds wait on their processes, so the central cells take the cores only when those are idle."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError):  # not Linux or not allowed: the same results, only slower
        pass


def _rounds(cell: Cell) -> int:
    return int(cell.hyperparameters["nrounds"])


def _fmt_s(seconds: float) -> str:
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes}m{sec:02d}s"


def run_benchmark(
    dataset: str,
    seeds: list[int],
    strategies: list[str],
    out: Path,
    jobs: int = 1,
    data_root: str | None = None,
    log: Callable[[str], None] = print,
    dp_grid: DPGrid | None = None,
    personalization: list[dict] | None = None,
    pretrained: bool = True,
) -> Path:
    """Run every missing cell of the sweep; returns the results CSV (``<out>/<dataset>/results.csv``, or
    ``<out>/<dataset>_dp/`` for the DP experiment, ``<out>/<dataset>_perso/`` for personalization; a model
    trained from scratch where FLamby's starts from ImageNet weights, ``pretrained=False``: ``_scratch`` added)."""
    from flamby_flare.pretrained import WEIGHTS, start_weights

    module = get_dataset(dataset)
    for what, values in (("--seed", seeds), ("--strategy", strategies)):
        twice = sorted({v for v in values if values.count(v) > 1}, key=str)
        if twice:
            raise FlambyFlareError(f"{what} {twice[0]} is given twice: each cell runs once")
    for seed in seeds:
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise FlambyFlareError(f"--seed must be integers 0 .. 2^32-1 (numpy's and torch's seeds), got {seed!r}")
    for s in strategies:
        if s not in strategy_names():
            raise FlambyFlareError(f"unknown strategy {s!r}; strategies: {', '.join(strategy_names())}")
    scratch = not pretrained and dataset in WEIGHTS and WEIGHTS[dataset].for_model
    name = dataset + ("_dp" if dp_grid else "_perso" if personalization else "") + ("_scratch" if scratch else "")
    work = check_writable(Path(out) / name, "benchmark --out folder")
    root = resolve_data_root(data_root).resolve()
    data_dir = locate_dataset(module.SOURCE, root / dataset)
    weights = start_weights(dataset, pretrained, None, root)
    with _only_run(work):
        return _sweep(
            module, dataset, seeds, strategies, work, jobs, root, data_dir, log, dp_grid, personalization, weights
        )


@contextlib.contextmanager
def _only_run(work: Path):
    """This sweep holds ``work`` (a lock file in it) for as long as it runs; a second sweep there is refused."""
    with open(work / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise FlambyFlareError(
                f"another benchmark is running in {work}: wait for it, or give this one another --out"
            ) from None
        yield


def _sweep(
    module,
    dataset: str,
    seeds: list[int],
    strategies: list[str],
    work: Path,
    jobs: int,
    root: Path,
    data_dir: Path,
    log: Callable[[str], None],
    dp_grid: DPGrid | None,
    personalization: list[dict] | None,
    weights: Path | None = None,
) -> Path:
    store = ResultStore(work / "results.csv", rows_per_cell=module.NUM_CLIENTS + 1)
    cells = plan_cells(dataset, seeds, strategies, dp_grid, personalization)
    if weights is not None:
        cells = [dataclasses.replace(c, weights=str(weights)) for c in cells]
    todo = [c for c in cells if not store.is_done(c.key_row())]
    total, done = len(cells), len(cells) - len(todo)
    log(f"{module.SOURCE.title}: {total} cells ({done} already done), {jobs} at a time -> {store.path}")
    start = time.monotonic()
    failures = []

    central = [c for c in todo if c.strategy is None]
    federated = [c for c in todo if c.strategy is not None]
    batches = split_batches(federated, jobs)
    estimate = SweepEstimate(len(central), sum(_rounds(c) for c in federated), len(batches), jobs)
    progress = Progress(module.SOURCE.title, total, log, unit="cell", initial=done, own_estimate=True)
    rounds_seen: dict[Cell, int] = {}

    def on_round(cell: Cell, number: int, rounds: int, since: float | None, startup: float | None) -> None:
        with lock:
            if startup is not None:
                estimate.job_started(startup)
            estimate.round_done(since)
            rounds_seen[cell] = number
            progress.note(f"{cell.method} seed {cell.seed} round {number}/{rounds}, {estimate.describe()}")

    def record(cell: Cell, rows: list[dict]) -> None:
        nonlocal done
        store.append(rows)
        with lock:
            done += 1
            if cell.strategy is None:
                estimate.central_done(rows[0]["wall_time_s"])
            else:
                estimate.cell_skipped(_rounds(cell) - rounds_seen.get(cell, 0))
            local = [r["Metric"] for r in rows if r["Test"].startswith("client_test")]
            status = (
                f"diverged at {rows[0]['diverged_at']}"
                if rows[0]["status"] == "diverged"
                else f"{sum(local) / len(local):.4f}"
            )
            dp = cell.dp_sgd
            label = (
                f"{cell.method} seed {cell.seed}"
                + (f" eps {dp['target_epsilon']:g} delta {dp['delta']:g}" if dp else "")
                + (f" + {cell.hyperparameters['personalization']}" if cell.personalization else "")
            )
            progress.write(
                f"[{done}/{total}] {label}: {status} ({rows[0]['wall_time_s']:.1f} s) | "
                f"elapsed {_fmt_s(time.monotonic() - start)}, {estimate.describe()}"
            )
            progress(done)
            progress.note(estimate.describe())

    def central_task(cell: Cell) -> None:
        if batches:
            _yield_cpu()
        record(cell, run_central(cell, data_dir, stop))

    def federated_task(cells: list[Cell], batch: str, started: threading.Event) -> None:
        run_federated(cells, root, work, record, batch, on_round, started, stop)

    lock, stop = threading.Lock(), threading.Event()
    # the simulator jobs first (their start-up is seconds of waiting), the central cells in this process meanwhile
    with (
        ThreadPoolExecutor(max_workers=max(1, jobs)) as simulators,
        ThreadPoolExecutor(max_workers=max(1, jobs)) as here,
    ):
        try:
            started = [threading.Event() for _ in batches]
            futures = {
                simulators.submit(federated_task, b, f"b{i}", started[i]): f"federated batch {i}"
                for i, b in enumerate(batches)
            }
            for future, event in list(zip(futures, started))[
                :jobs
            ]:  # the first ones started, before torch's import takes the GIL
                while not event.wait(0.02) and not future.done():
                    pass
            import torch

            torch.set_num_threads(1)
            futures.update({here.submit(central_task, c): f"{c.method} seed {c.seed}" for c in central})
            for future in as_completed(futures):
                try:
                    future.result()
                except Exception as exc:  # one failure must not stop the sweep; what is missing runs again on re-run
                    failures.append(f"{futures[future]}: {exc}")
                    progress.write(f"  FAILED {failures[-1]}")
        except KeyboardInterrupt:  # Ctrl-C: no new cell starts, the running ones stop (their simulators with them)
            stop.set()
            for pool in (simulators, here):
                pool.shutdown(wait=False, cancel_futures=True)
    progress.close()
    if stop.is_set():
        raise KeyboardInterrupt(
            f"the sweep is stopped; its {done} finished cells are in {store.path}, and the same command runs the others"
        )
    if failures:
        raise FlambyFlareError(f"{len(failures)} cell(s) failed; re-run to retry them. First: {failures[0]}")
    log(f"done in {_fmt_s(time.monotonic() - start)}: {store.path}")
    return store.path
