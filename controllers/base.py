"""The base every flamby-flare strategy shares: FLamby's protocol as an NVFlare ``ModelController``.

One run: check that the connected sites are exactly the dataset's centers, build the seeded initial
model (``set_seed(seed); Baseline()``, as FLamby's benchmark does), run ``num_rounds`` rounds, send a
``validate`` task with the final global model to every site, and write ``summary.json`` and
``results.csv`` into the job's run directory.

Faults: after every round the controller checkpoints its whole state (see ``controllers.checkpoint``);
a job restarted with ``resume=True`` continues from the last completed round and ends bit-identical to
an uninterrupted run. A site that gives no result within the task timeout (machine or network lost) is
dropped for the rest of the run when at least ``min_clients`` sites remain; otherwise the run fails with
one line naming the missing sites. (A site whose job process crashes is reported by its NVFlare client,
and NVFlare fails the job at once; resume it once the site is back.) Subclasses say what one round does (``run_round``); the
default broadcasts ``train`` to every site and hands the results, ordered by site, to ``aggregate``.
What is aggregated is every state-dict entry (see ``controllers.aggregation``); server optimizers and
server learning rates act on the trainable parameters (``param_keys``), buffers are averaged.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import shutil
import time
from abc import abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from nvflare.app_common.abstract.fl_model import FLModel, ParamsType
from nvflare.app_common.workflows.model_controller import ModelController

from nvflare.apis.fl_constant import FLContextKey

from controllers.aggregation import weighted_average
from controllers.checkpoint import Checkpoint, load_checkpoint, save_checkpoint, to_tensors
from flamby_flare.datasets import get_constants, get_dataset
from flamby_flare.model_state import NumpyState, add_update, initial_model, to_numpy_state
from flamby_flare.protocol import (
    META_ERROR, META_PRIVACY, META_N_SAMPLES, METRIC_N_TEST, METRIC_PERSONALIZED, METRIC_TRAIN_LOSS, METRIC_TRAIN_SECONDS, METRIC_VALUE, TASK_TRAIN, TASK_VALIDATE, TrainPlan,
)
from flamby_flare.paths import resolve_state_root, run_folder
from flamby_flare.personalization import Personalization
from flamby_flare.results import format_table, write_results
from flamby_flare.seeding import get_rng_state, resolve_seed, set_rng_state
from flamby_flare.sites import expected_sites, sort_sites

GLOBAL_MODEL_FILE = "FL_global_model.pt"


def _mean(per_site: dict[str, float]) -> float:
    """Unweighted mean over the sites with a finite value (NaN if none)."""
    scored = [v for v in per_site.values() if math.isfinite(v)]
    return sum(scored) / len(scored) if scored else math.nan


def _finite(params: NumpyState) -> bool:
    return all(np.isfinite(v).all() for v in params.values() if np.issubdtype(np.asarray(v).dtype, np.floating))


class RunAborted(Exception):
    """NVFlare aborted the job (an admin, or a failed site): stop quietly, keeping the checkpoint."""


@dataclass
class SiteResult:
    """A site's ``train`` reply: its new model state, train-set size and mean training loss."""

    site: str
    params: NumpyState
    n_samples: int
    loss: float | None  # None: withheld by the site (DP)
    seconds: float
    meta: dict = field(default_factory=dict)

    @property
    def privacy(self) -> list[dict]:
        """The ledger records of the DP mechanisms the site applied (``privacy.accounting``)."""
        return self.meta.get(META_PRIVACY, [])


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
        min_clients: the fewest sites a round may aggregate (None: all of them); a site that gives no result
            within ``train_timeout`` is dropped while at least this many remain.
        resume: continue from this run's last checkpoint if there is one (a fresh start otherwise).
        personalization: ``flamby_flare.personalization.Personalization``'s fields (``method``: ``finetune``,
            ``ditto`` or ``fedbn``), sent to the sites with the plan; every site then also reports its
            personalized model's metric.
        pretrained_weights: the initial model's weights, a local file on the server (Fed-ISIC2019: timm's
            ``efficientnet_b0`` ImageNet state dict; None trains from scratch, as the summary then says).
        checkpoint_dir: where the per-round checkpoint lives (None: ``<state root>/server/<run key>``, see
            ``run_key`` and ``flamby_flare.paths``: the same for every restart of the job). It is deleted
            once the run has written its results.
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
        min_clients: int | None = None,
        resume: bool = False,
        checkpoint_dir: str | None = None,
        personalization: dict | None = None,
        pretrained_weights: str | None = None,
    ):
        super().__init__(persistor_id="", task_check_period=task_check_period)
        if train_timeout <= 0 or validate_timeout <= 0:
            raise ValueError("train_timeout and validate_timeout must be > 0 (0 would wait forever)")
        num_clients = get_constants(dataset).NUM_CLIENTS  # an unknown dataset is refused here, at job start
        if min_clients is not None and not 1 <= min_clients <= num_clients:
            raise ValueError(f"min_clients must be in 1..{num_clients} for {dataset}, got {min_clients}")
        self.dataset = dataset
        self.num_rounds = num_rounds
        self.num_updates = num_updates
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.seed = seed
        self.train_timeout = train_timeout
        self.validate_timeout = validate_timeout
        self.results_dir = results_dir
        self.min_clients = min_clients
        self.resume = resume
        self.checkpoint_dir = checkpoint_dir
        self.personalization = Personalization.from_dict(personalization)  # bad settings are refused at job start
        self.pretrained_weights = pretrained_weights
        self.history: list[dict] = []
        self.dropped: dict[str, int] = {}  # site -> the round it was dropped in (0: absent at start)

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

    def strategy_state(self) -> dict[str, NumpyState]:
        """Server-side strategy state saved with the global model (e.g. FedOpt's m and v)."""
        return {}

    def load_strategy_state(self, state: dict[str, NumpyState]) -> None:
        """Restore what ``strategy_state`` returned (on resume)."""
        if state:
            raise NotImplementedError(f"{type(self).__name__} saved strategy state but cannot restore it")

    def run_round(self, round_index: int, params: NumpyState) -> RoundOutcome:
        """One round: every active site trains from ``params``, then ``aggregate``."""
        results = self.train_on(self.active_sites, round_index, params)
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
            personalization=self.personalization.to_dict() if self.personalization else None,
        )
        self.total_rounds = int(self.num_rounds or module.get_nb_max_rounds(self.num_updates, self.plan.batch_size))
        self.plan = dataclasses.replace(self.plan, run_key=self.run_key())
        model = initial_model(module, seed, self.pretrained_weights)
        self.param_keys = [name for name, _ in model.named_parameters()]
        params = to_numpy_state(model)
        start_round = 0
        if self.resume:
            params, start_round = self._resume(params)
        self.info(
            f"{self.method_name} on {self.dataset}: {len(self.sites)} sites, {self.total_rounds} rounds, seed {seed}"
            + (f", resuming after round {start_round}" if start_round else "")
        )
        try:
            self._run_rounds(module, seed, params, start_round)
        except RunAborted:
            self.info("run aborted; the last checkpoint remains for a resume")

    def _run_rounds(self, module, seed: int, params: NumpyState, start_round: int) -> None:
        start = time.monotonic()
        diverged_at = None
        for round_index in range(start_round, self.total_rounds):
            if self.abort_signal.triggered:
                raise RunAborted()
            round_start = time.monotonic()
            outcome = self.run_round(round_index, params)
            loss = self._log_round(round_index, outcome, time.monotonic() - round_start)
            if (loss is not None and not math.isfinite(loss)) or not _finite(outcome.params):
                diverged_at = round_index + 1
                self.warning(f"training diverged in round {diverged_at} (train loss {loss}): stopping, metrics are NaN")
                break
            params = outcome.params
            save_checkpoint(self.checkpoint_path(), self._checkpoint(round_index + 1, params))
        if diverged_at is None:
            self.save_global_model(params)
            per_site, n_test, personalized = self.validate(params)
        else:
            per_site, n_test = dict.fromkeys(self.sites, math.nan), {}
            personalized = dict.fromkeys(self.sites, math.nan) if self.personalization else {}
        summary = {
            "dataset": self.dataset,
            "strategy": self.strategy_name,
            "method": self.method_name,
            "seed": seed,
            "metric_name": module.METRIC_NAME,
            "per_site": per_site,
            "mean": _mean(per_site),
            "personalization": self.personalization.label if self.personalization else None,
            "per_site_personalized": personalized or None,
            "mean_personalized": _mean(personalized) if personalized else None,
            "n_test": n_test,
            "rounds": self.total_rounds,
            "num_updates": self.plan.num_updates,
            "batch_size": self.plan.batch_size,
            "pretrained_weights": self.pretrained_weights,
            "hyperparameters": self.hyperparameters(),
            "history": self.history,
            "diverged_at_round": diverged_at,
            "resumed_after_round": start_round or None,
            "dropped_sites": dict(self.dropped),
            "privacy": self.privacy_ledger(),
            "wall_time_s": round(time.monotonic() - start, 3),
        }
        write_results(self.output_dir(), summary)
        shutil.rmtree(self.checkpoint_path().parent, ignore_errors=True)  # the run is over: nothing to resume
        self.info(f"results in {self.output_dir()}\n" + format_table(summary))

    def privacy_ledger(self) -> dict[str, list[dict]]:
        """Per site, the latest ledger record of each DP mechanism it applied (empty without DP)."""
        ledger: dict[str, dict[str, dict]] = {}
        for entry in self.history:
            for site, records in entry.get("privacy", {}).items():
                ledger.setdefault(site, {}).update({r["mechanism"]: r for r in records})
        return {site: list(ledger[site].values()) for site in sort_sites(ledger)}

    def min_sites(self, num_sites: int) -> int:
        """The fewest sites a round may aggregate (``min_clients``, else all ``num_sites``)."""
        return self.min_clients or num_sites

    @property
    def active_sites(self) -> list[str]:
        return [s for s in self.sites if s not in self.dropped]

    # ---- checkpoint and resume -------------------------------------------------------------------
    def job_name(self) -> str:
        meta = self.fl_ctx.get_prop(FLContextKey.JOB_META) or {}
        return str(meta.get("name") or Path(self.get_run_dir()).name)

    def run_key(self) -> str:
        """The run's name across restarts: job name, workflow ``results_dir`` and a digest of ``run_config``
        (two runs share state only when they would compute the same numbers)."""
        digest = hashlib.sha256(json.dumps(self.run_config(), sort_keys=True).encode()).hexdigest()[:12]
        return "/".join(part for part in (self.job_name(), self.results_dir, digest) if part)

    def checkpoint_path(self) -> Path:
        """``checkpoint_dir`` or ``<state root>/server/<run key>``, then ``checkpoint.pt``."""
        if self.checkpoint_dir:
            return Path(self.checkpoint_dir) / "checkpoint.pt"
        return run_folder(resolve_state_root() / "server", self.plan.run_key) / "checkpoint.pt"

    def run_config(self) -> dict:
        """What a checkpoint must match to be resumed: everything that shapes the run's numbers."""
        plan = {k: v for k, v in dataclasses.asdict(self.plan).items() if k != "run_key"}
        return {
            "strategy": type(self).__name__, "plan": plan, "rounds": self.total_rounds,
            "hyperparameters": self.hyperparameters(), "sites": self.sites,
            **({"pretrained_weights": self.pretrained_weights} if self.pretrained_weights else {}),
        }

    def _checkpoint(self, rounds_done: int, params: NumpyState) -> Checkpoint:
        return Checkpoint(
            config=self.run_config(), rounds_done=rounds_done, params=params,
            strategy_state=self.strategy_state(), history=self.history, dropped=dict(self.dropped),
            rng_state=get_rng_state(),
        )

    def _resume(self, params: NumpyState) -> tuple[NumpyState, int]:
        """The state to continue from: the checkpoint's when there is one, else the initial ``params``."""
        path = self.checkpoint_path()
        checkpoint = load_checkpoint(path)
        if checkpoint is None:
            self.info(f"resume: no checkpoint at {path}, starting at round 1")
            return params, 0
        config = self.run_config()
        if checkpoint.config != config:
            changed = sorted(k for k in config if checkpoint.config.get(k) != config[k])
            raise RuntimeError(
                f"cannot resume from {path}: it belongs to a run with different {', '.join(changed)}; "
                "delete it or set resume to false"
            )
        self.load_strategy_state(checkpoint.strategy_state)
        self.history = list(checkpoint.history)
        self.dropped = {**{site: checkpoint.rounds_done for site in self.dropped}, **checkpoint.dropped}
        set_rng_state(checkpoint.rng_state)
        return checkpoint.params, checkpoint.rounds_done

    def output_dir(self) -> Path:
        """Where this workflow writes results and checkpoint: the run directory (or ``results_dir`` in it)."""
        path = Path(self.get_run_dir()) / (self.results_dir or "")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def save_global_model(self, params: NumpyState) -> Path:
        """``FL_global_model.pt`` in the run directory: {"model": state dict, "strategy_state": ..., "rounds": n}."""
        path = self.output_dir() / GLOBAL_MODEL_FILE
        strategy_state = {name: to_tensors(state) for name, state in self.strategy_state().items()}
        torch.save({"model": to_tensors(params), "strategy_state": strategy_state, "rounds": self.total_rounds}, path)
        return path

    def _log_round(self, round_index: int, outcome: RoundOutcome, wall_s: float) -> float | None:
        """Record the round in the history and the log; returns its sample-weighted training loss (None when
        the sites withheld it)."""
        results = outcome.results
        reported = [r for r in results if r.loss is not None]
        loss = (sum(r.loss * r.n_samples for r in reported) / sum(r.n_samples for r in reported)) if reported else None
        privacy = {r.site: r.privacy for r in results if r.privacy}
        self.history.append({
            "round": round_index + 1,
            "train_loss": loss,
            "per_site": {r.site: r.loss for r in results},
            "wall_s": round(wall_s, 4),
            "site_compute_s": {r.site: round(r.seconds, 4) for r in results},
            **({"privacy": privacy} if privacy else {}),
            **outcome.info,
        })
        flag = "" if loss is None or math.isfinite(loss) else "  (non-finite!)"
        spent = " ".join(f"{site}: " + ", ".join(f"{rec['mechanism']} eps {rec['epsilon']:.3g}" for rec in recs)
                         for site, recs in privacy.items())
        self.info(
            f"round {round_index + 1}/{self.total_rounds}: train loss "
            + (f"{loss:.5f}{flag} " + " ".join(f"{r.site}={r.loss:.4f}" for r in reported) if loss is not None else "withheld")
            + (f" | {spent}" if spent else "")
        )
        return loss

    def _check_sites(self, num_clients: int) -> list[str]:
        connected = {client.name for client in self.engine.get_clients()}
        expected = expected_sites(num_clients)
        missing = [s for s in expected if s not in connected]
        unexpected = sorted(connected - set(expected))
        needed = self.min_sites(num_clients)
        if unexpected or len(expected) - len(missing) < needed:
            problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
                [f"{', '.join(unexpected)} {'is' if len(unexpected) == 1 else 'are'} not a center"] if unexpected else [])
            raise RuntimeError(
                f"{self.dataset} has {num_clients} centers, so its sites must be "
                f"{expected[0]} .. {expected[-1]}{f' (at least {needed})' if needed < num_clients else ''}: "
                + "; ".join(problems)
            )
        if missing:
            self.dropped.update(dict.fromkeys(missing, 0))
            self.warning(f"{', '.join(missing)} not connected at start: running without (min_clients {needed})")
        return expected

    def _send(self, task: str, model: FLModel, targets: list[str], timeout: int) -> dict[str, FLModel]:
        """Send ``task`` to ``targets`` and return their replies by site. Sites without a valid reply are
        dropped while ``min_clients`` sites remain; otherwise the run fails naming them."""
        replies = self.send_model_and_wait(task_name=task, data=model, targets=targets, timeout=int(timeout))
        by_site = {reply.meta["client_name"]: reply for reply in replies}
        errors = [by_site[s].meta[META_ERROR] for s in sort_sites(by_site) if META_ERROR in by_site[s].meta]
        if errors:  # a site that cannot serve (e.g. no data) ends the run with its own one-line reason
            raise RuntimeError(errors[0] + (f" (and {len(errors) - 1} more site(s) failed)" if len(errors) > 1 else ""))
        missing = [s for s in targets if s not in by_site]
        if self.abort_signal.triggered:
            raise RunAborted()
        if not missing:
            return by_site
        needed = self.min_sites(len(self.sites))
        remaining = len(self.active_sites) - len(missing)
        what = f"{task} (round {model.current_round + 1}): no valid result from {', '.join(missing)} within {timeout} s"
        if remaining < needed:
            raise RuntimeError(
                f"{what}; {remaining} site(s) left, the run needs {needed} (min_clients); see the site logs"
            )
        for site in missing:
            self.dropped[site] = model.current_round + 1
        self.warning(f"{what}: dropped for the rest of the run, continuing with {remaining} sites (min_clients {needed})")
        return by_site

    def train_on(self, targets: list[str], round_index: int, params: NumpyState) -> list[SiteResult]:
        """Send ``train`` with ``params`` to ``targets``; their results in site order."""
        model = FLModel(
            params_type=ParamsType.FULL, params=params, current_round=round_index,
            total_rounds=self.total_rounds, meta={**self.plan.to_meta(), **self.train_meta()},
        )
        replies = self._send(TASK_TRAIN, model, targets, self.train_timeout)
        results = []
        for s in sort_sites(replies):
            reply = replies[s]
            loss = reply.metrics.get(METRIC_TRAIN_LOSS)
            new = add_update(params, reply.params) if reply.params_type == ParamsType.DIFF else reply.params
            results.append(SiteResult(
                s, new, int(reply.meta[META_N_SAMPLES]), None if loss is None else float(loss),
                float(reply.metrics[METRIC_TRAIN_SECONDS]), reply.meta,
            ))
        return results

    def validate(self, params: NumpyState) -> tuple[dict[str, float], dict[str, int], dict[str, float]]:
        """The final model's metric on every site's local test set, in site order; with personalization also
        each site's personalized model's metric on it (else an empty dict)."""
        model = FLModel(
            params_type=ParamsType.FULL, params=params, current_round=self.total_rounds,
            total_rounds=self.total_rounds, meta=self.plan.to_meta(),
        )
        replies = self._send(TASK_VALIDATE, model, self.active_sites, self.validate_timeout)
        per_site = {s: float(replies[s].metrics[METRIC_VALUE]) if s in replies else math.nan for s in self.sites}
        n_test = {s: int(replies[s].metrics[METRIC_N_TEST]) for s in self.sites if s in replies}
        personalized = {}
        if self.personalization:
            personalized = {s: float(replies[s].metrics.get(METRIC_PERSONALIZED, math.nan)) if s in replies else math.nan
                            for s in self.sites}
        return per_site, n_test, personalized
