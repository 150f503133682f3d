"""The base every flamby-flare strategy shares: FLamby's protocol as an NVFlare ``ModelController``.

One run: check that the connected sites are exactly the dataset's centers, build the seeded initial
model (``set_seed(seed); Baseline()``, as FLamby's benchmark does), run ``num_rounds`` rounds, send a
``validate`` task with the final global model to every site, and write ``summary.json`` and
``results.csv`` into the job's run directory. Subclasses say what one round does (``run_round``); the
default broadcasts ``train`` to every site and hands the results, ordered by site, to ``aggregate``.
What is aggregated is every state-dict entry (see ``controllers.aggregation``); server optimizers and
server learning rates act on the trainable parameters (``param_keys``), buffers are averaged.
"""

from __future__ import annotations

import math
import time
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from nvflare.app_common.abstract.fl_model import FLModel, ParamsType
from nvflare.app_common.workflows.model_controller import ModelController

from controllers.aggregation import weighted_average
from flamby_flare.datasets import get_dataset
from flamby_flare.model_state import NumpyState, initial_model, to_numpy_state
from flamby_flare.protocol import (
    META_N_SAMPLES, METRIC_N_TEST, METRIC_TRAIN_LOSS, METRIC_TRAIN_SECONDS, METRIC_VALUE, TASK_TRAIN, TASK_VALIDATE, TrainPlan,
)
from flamby_flare.results import format_table, write_results
from flamby_flare.seeding import resolve_seed
from flamby_flare.sites import expected_sites, sort_sites

GLOBAL_MODEL_FILE = "FL_global_model.pt"


@dataclass
class SiteResult:
    """A site's ``train`` reply: its new model state, train-set size and mean training loss."""

    site: str
    params: NumpyState
    n_samples: int
    loss: float
    seconds: float
    meta: dict = field(default_factory=dict)


@dataclass
class RoundOutcome:
    """What a round produced: the new global state, the site results (in the order they were produced) and
    anything worth recording in the run history (e.g. Cyclic's order)."""

    params: NumpyState
    results: list[SiteResult]
    info: dict = field(default_factory=dict)


class FlambyController(ModelController):
    """Base controller (abstract: subclasses implement ``aggregate`` or ``run_round``).

    Args:
        dataset: FLamby dataset name; the job's sites must be exactly ``site-1 .. site-NUM_CLIENTS``.
        num_rounds: rounds to run (None: FLamby's ``get_nb_max_rounds(num_updates)``).
        num_updates: local SGD batch updates per site and round (FLamby's benchmark: 100).
        learning_rate: the sites' SGD lr (None: the dataset's ``LR``).
        batch_size: local batch size (None: the dataset's ``BATCH_SIZE``).
        seed: run seed (None: ``FLAMBY_FLARE_SEED``, else 42).
        train_timeout, validate_timeout: seconds a task may take before the run fails (never 0).
        task_check_period: how often the controller polls its tasks, in seconds.
        results_dir: sub-folder of the run directory for this workflow's results and checkpoint (several
            workflows in one job, e.g. the cells of a benchmark, each write their own).
    """

    strategy_name: ClassVar[str]

    def __init__(
        self,
        dataset: str,
        num_rounds: int | None = None,
        num_updates: int = 100,
        learning_rate: float | None = None,
        batch_size: int | None = None,
        seed: int | None = None,
        train_timeout: int = 1800,
        validate_timeout: int = 600,
        task_check_period: float = 0.02,
        results_dir: str | None = None,
    ):
        super().__init__(persistor_id="", task_check_period=task_check_period)
        if train_timeout <= 0 or validate_timeout <= 0:
            raise ValueError("train_timeout and validate_timeout must be > 0 (0 would wait forever)")
        self.dataset = dataset
        self.num_rounds = num_rounds
        self.num_updates = num_updates
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.seed = seed
        self.train_timeout = train_timeout
        self.validate_timeout = validate_timeout
        self.results_dir = results_dir
        self.history: list[dict] = []

    def start_controller(self, fl_ctx) -> None:
        super().start_controller(fl_ctx)
        # NVFlare 2.9 bug: Controller.set_communicator sets `task_check_period` on the WFCommServer, which
        # reads `_task_check_period`, so its task monitor and waits always poll every 0.2 s (two waits a round).
        if hasattr(self.communicator, "_task_check_period"):
            self.communicator._task_check_period = self._task_check_period

    # ---- what strategies customize -------------------------------------------------------------
    @property
    def method_name(self) -> str:
        """FLamby's method label, e.g. ``FedAvg100``."""
        return f"{self.strategy_name}{self.num_updates}"

    def hyperparameters(self) -> dict:
        """Strategy hyperparameters recorded in the results (FLamby's column names)."""
        return {"learning_rate": self.plan.learning_rate}

    def train_meta(self) -> dict:
        """Extra task meta a strategy sends with every ``train`` task (e.g. FedProx's mu)."""
        return {}

    def strategy_state(self) -> dict:
        """Server-side strategy state saved with the global model (e.g. FedOpt's m and v)."""
        return {}

    def run_round(self, round_index: int, params: NumpyState) -> RoundOutcome:
        """One round: every site trains from ``params``, then ``aggregate``."""
        results = self.train_on(self.sites, round_index, params)
        return RoundOutcome(self.aggregate(params, results), results)

    @abstractmethod
    def aggregate(self, params: NumpyState, results: list[SiteResult]) -> NumpyState:
        """The new global state from the round's start state and the sites' results (in site order)."""

    def average(self, results: list[SiteResult]) -> NumpyState:
        """The sites' states averaged with weights n_i / N (the model-state policy of ``aggregation``)."""
        return weighted_average([r.params for r in results], [r.n_samples for r in results])

    # ---- the protocol ---------------------------------------------------------------------------
    def run(self) -> None:
        module = get_dataset(self.dataset)
        self.sites = self._check_sites(module.NUM_CLIENTS)
        seed = resolve_seed(self.seed)
        self.plan = TrainPlan(
            dataset=self.dataset,
            seed=seed,
            learning_rate=float(self.learning_rate if self.learning_rate is not None else module.LR),
            num_updates=int(self.num_updates),
            batch_size=int(self.batch_size or module.BATCH_SIZE),
        )
        self.total_rounds = int(self.num_rounds or module.get_nb_max_rounds(self.num_updates, self.plan.batch_size))
        model = initial_model(module, seed)
        self.param_keys = [name for name, _ in model.named_parameters()]
        params = to_numpy_state(model)
        self.info(f"{self.method_name} on {self.dataset}: {len(self.sites)} sites, {self.total_rounds} rounds, seed {seed}")
        start = time.monotonic()
        diverged_at = None
        for round_index in range(self.total_rounds):
            if self.abort_signal.triggered:
                return
            round_start = time.monotonic()
            outcome = self.run_round(round_index, params)
            loss = self._log_round(round_index, outcome, time.monotonic() - round_start)
            if not math.isfinite(loss):
                diverged_at = round_index + 1
                self.warning(f"training diverged in round {diverged_at} (train loss {loss}): stopping, metrics are NaN")
                break
            params = outcome.params
        if diverged_at is None:
            self.save_checkpoint(params)
            per_site, n_test = self.validate(params)
        else:
            per_site, n_test = dict.fromkeys(self.sites, math.nan), {}
        summary = {
            "dataset": self.dataset,
            "strategy": self.strategy_name,
            "method": self.method_name,
            "seed": seed,
            "metric_name": module.METRIC_NAME,
            "per_site": per_site,
            "mean": sum(per_site.values()) / len(per_site),
            "n_test": n_test,
            "rounds": self.total_rounds,
            "num_updates": self.plan.num_updates,
            "batch_size": self.plan.batch_size,
            "hyperparameters": self.hyperparameters(),
            "history": self.history,
            "diverged_at_round": diverged_at,
            "wall_time_s": round(time.monotonic() - start, 3),
        }
        write_results(self.output_dir(), summary)
        self.info(f"results in {self.output_dir()}\n" + format_table(summary))

    def output_dir(self) -> Path:
        """Where this workflow writes results and checkpoint: the run directory (or ``results_dir`` in it)."""
        path = Path(self.get_run_dir()) / (self.results_dir or "")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def save_checkpoint(self, params: NumpyState) -> Path:
        """``FL_global_model.pt``: {"model": state dict, "strategy_state": ..., "rounds": n}."""
        path = self.output_dir() / GLOBAL_MODEL_FILE
        to_torch = lambda state: {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}  # noqa: E731
        strategy_state = {name: to_torch(state) for name, state in self.strategy_state().items()}
        torch.save({"model": to_torch(params), "strategy_state": strategy_state, "rounds": self.total_rounds}, path)
        return path

    def _log_round(self, round_index: int, outcome: RoundOutcome, wall_s: float) -> float:
        """Record the round in the history and the log; returns its sample-weighted training loss."""
        results = outcome.results
        n = sum(r.n_samples for r in results)
        loss = sum(r.loss * r.n_samples for r in results) / n
        self.history.append({
            "round": round_index + 1,
            "train_loss": loss,
            "per_site": {r.site: r.loss for r in results},
            "wall_s": round(wall_s, 4),
            "site_compute_s": {r.site: round(r.seconds, 4) for r in results},
            **outcome.info,
        })
        flag = "" if math.isfinite(loss) else "  (non-finite!)"
        self.info(
            f"round {round_index + 1}/{self.total_rounds}: train loss {loss:.5f}{flag} "
            + " ".join(f"{r.site}={r.loss:.4f}" for r in results)
        )
        return loss

    def _check_sites(self, num_clients: int) -> list[str]:
        connected = [client.name for client in self.engine.get_clients()]
        expected = expected_sites(num_clients)
        if sorted(connected) != sorted(expected):
            raise RuntimeError(
                f"{self.dataset} has {num_clients} centers, so its sites must be exactly "
                f"{', '.join(expected)}; this run has {', '.join(sorted(connected)) or 'none'}"
            )
        return expected

    def _send(self, task: str, model: FLModel, targets: list[str], timeout: int) -> dict[str, FLModel]:
        """Send ``task`` to ``targets`` and return their replies by site; fail if any is missing."""
        replies = self.send_model_and_wait(task_name=task, data=model, targets=targets, timeout=int(timeout))
        by_site = {reply.meta["client_name"]: reply for reply in replies}
        missing = [s for s in targets if s not in by_site]
        if missing and not self.abort_signal.triggered:
            raise RuntimeError(
                f"{task} (round {model.current_round}): no valid result from {', '.join(missing)} "
                f"within {timeout} s; see the site logs"
            )
        return by_site

    def train_on(self, targets: list[str], round_index: int, params: NumpyState) -> list[SiteResult]:
        """Send ``train`` with ``params`` to ``targets``; their results in site order."""
        model = FLModel(
            params_type=ParamsType.FULL, params=params, current_round=round_index,
            total_rounds=self.total_rounds, meta={**self.plan.to_meta(), **self.train_meta()},
        )
        replies = self._send(TASK_TRAIN, model, targets, self.train_timeout)
        return [
            SiteResult(
                s, replies[s].params, int(replies[s].meta[META_N_SAMPLES]),
                float(replies[s].metrics[METRIC_TRAIN_LOSS]), float(replies[s].metrics[METRIC_TRAIN_SECONDS]),
                replies[s].meta,
            )
            for s in sort_sites(replies)
        ]

    def validate(self, params: NumpyState) -> tuple[dict[str, float], dict[str, int]]:
        """The final model's metric on every site's local test set, in site order."""
        model = FLModel(params_type=ParamsType.FULL, params=params, current_round=self.total_rounds, total_rounds=self.total_rounds)
        replies = self._send(TASK_VALIDATE, model, self.sites, self.validate_timeout)
        per_site = {s: float(replies[s].metrics[METRIC_VALUE]) for s in self.sites}
        n_test = {s: int(replies[s].metrics[METRIC_N_TEST]) for s in self.sites}
        return per_site, n_test
