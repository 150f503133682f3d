"""NVFlare's runner of a strategy: ``StrategyController``, a ``ModelController`` whose subclasses
``controllers.<Label>`` (one per registered strategy, made by ``controller_for``) are the jobs' workflows.

One run: check that the connected sites are exactly the dataset's centers (``Roster``), build the seeded
initial model (``set_seed(seed); Baseline()``, as FLamby's benchmark does), play ``num_rounds`` rounds of
the strategy (``flamby_flare.strategies.base.play_round``: its schedule, the sites' local rounds as NVFlare
``train`` tasks, its server rule), send a ``validate`` task with the final global model to every site, and
write ``summary.json`` and ``results.csv`` into the job's run directory (``RunRecord``).

Faults: after every round the controller checkpoints its whole state (``Checkpointer``); a job restarted
with ``resume=True`` continues from the last completed round and ends bit-identical to an uninterrupted
run. A site that gives no result within the task timeout (machine or network lost) is dropped for the
rest of the run while at least ``min_clients`` sites remain; otherwise the run fails with one line naming
the missing sites. (A site whose job process crashes is reported by its NVFlare client, and NVFlare fails
the job at once; resume it once the site is back.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
from nvflare.apis.fl_constant import FLContextKey
from nvflare.app_common.abstract.fl_model import FLModel, ParamsType
from nvflare.app_common.workflows.model_controller import ModelController

from controllers.checkpoint import open_run, to_tensors
from controllers.record import RunRecord, mean_over_sites
from controllers.roster import QuorumLost, Roster
from controllers.settings import split_arguments
from controllers.tracking import RunStream
from controllers.traffic import META_RECEIVED, META_SENT
from executors import simulator_shim
from flamby_flare.datasets import get_dataset
from flamby_flare.datasets.lazy import site_imports
from flamby_flare.divergence import divergence, weights_norm
from flamby_flare.errors import RUN_STOPPED_EARLY, FlambyFlareError
from flamby_flare.fairness import fairness
from flamby_flare.homomorphic import HEError
from flamby_flare.model_state import NumpyState, add_update, initial_model, to_numpy_state
from flamby_flare.paths import check_writable, plain_name, resolve_state_root
from flamby_flare.personalization import Personalization
from flamby_flare.protocol import (
    META_ERROR,
    META_N_SAMPLES,
    META_REPORT,
    METRIC_N_TEST,
    METRIC_PERSONALIZED,
    METRIC_TRAIN_LOSS,
    METRIC_TRAIN_SECONDS,
    METRIC_VALUE,
    TASK_TRAIN,
    TASK_VALIDATE,
    TrainPlan,
)
from flamby_flare.results import format_table, write_results
from flamby_flare.seeding import derive_seed, resolve_seed
from flamby_flare.settings import SettingError, refused_in_one_line
from flamby_flare.sites import expected_sites, sort_sites
from flamby_flare.strategies.aggregation import is_ciphertext
from flamby_flare.strategies.base import SiteResult, Strategy, play_round

GLOBAL_MODEL_FILE = "FL_global_model.pt"


# A lost site: the first round's tasks may take ``train_timeout`` (it includes the sites' start); later ones
# LOST_SITE_FACTOR x the slowest round since (the first round itself while it is the only one), at least
# LOST_SITE_FLOOR_S, at most ``train_timeout``.
LOST_SITE_FLOOR_S = 30
LOST_SITE_FACTOR = 10


class RunAborted(Exception):
    """NVFlare aborted the job (an admin, or a failed site): the run ends as failed, keeping its checkpoint."""


class StrategyController(ModelController):
    """The workflow of one run of ``strategy_class`` (see the module docstring).

    Arguments: the run's (``controllers.settings.RunSettings``: dataset, num_rounds, num_updates,
    learning_rate, ...) and the strategy's hyperparameters (its fields, e.g. FedProx's ``mu``), all checked
    at job start: an unknown name or a bad value is refused in one line naming it.
    """

    strategy_class: ClassVar[type[Strategy]]

    def __init__(self, dataset: str, **arguments):
        with refused_in_one_line(__name__):
            self.settings, self.strategy = split_arguments(
                self.strategy_class, dataset, arguments, f"controllers.{type(self).__name__}"
            )
            if self.settings.homomorphic_encryption and self.strategy.he_refusal:
                raise SettingError(
                    f"controllers.{type(self).__name__}: homomorphic encryption cannot serve "
                    f"{self.strategy.name}: {self.strategy.he_refusal}"
                )
        simulator_shim.warm_forkserver(site_imports(get_dataset(self.settings.dataset)))  # in the simulator only
        self.personalization = Personalization.from_dict(self.settings.personalization)
        self.he = None  # the server's ciphertext handling (flamby_flare.homomorphic), with homomorphic_encryption
        self.pretrained_weights: str | None = None  # the file the initial model started from (run())
        super().__init__(persistor_id="", task_check_period=self.settings.task_check_period)

    def start_controller(self, fl_ctx) -> None:
        super().start_controller(fl_ctx)
        # NVFlare 2.9 bug: Controller.set_communicator sets `task_check_period` on the WFCommServer, which
        # reads `_task_check_period`, so its task monitor and waits always poll every 0.2 s (two waits a round).
        if hasattr(self.communicator, "_task_check_period"):
            self.communicator._task_check_period = self._task_check_period

    @property
    def personalized(self) -> bool:
        """Whether the sites report a personalized model: a personalization method, or a personalized strategy."""
        return self.personalization is not None or self.strategy.personal_state is not None

    @property
    def method_name(self) -> str:
        """FLamby's method label, e.g. ``FedAvg100``."""
        return f"{self.strategy.label}{self.settings.num_updates}"

    def hyperparameters(self) -> dict:
        """What results record of the strategy (FLamby's column names): the sites' lr and its fields."""
        return {"learning_rate": self.plan.learning_rate, **self.strategy.hyperparameters()}

    # ---- the run --------------------------------------------------------------------------------
    def run(self) -> None:
        s = self.settings
        module = get_dataset(s.dataset)
        check_writable(self.get_run_dir(), "server's run directory")  # before any round: a run that cannot write
        check_writable(resolve_state_root() / "server", "server's state folder")
        self.roster = Roster(expected_sites(module.NUM_CLIENTS), s.min_clients, s.dataset)
        absent = self.roster.check_connected({client.name for client in self.engine.get_clients()})
        threads = simulator_shim.simulator_threads()
        if threads is not None and threads < len(self.roster.sites):
            self.warning(
                f"the simulator runs these {len(self.roster.sites)} sites in {threads} process(es), starting a new one "
                f"for every task (about a second each); for one live process per site run it with -t {len(self.roster.sites)} "
                "(same results, bit for bit)"
            )
        if absent:
            self.warning(
                f"{', '.join(absent)} not connected at start: running without (min_clients {self.roster.needed})"
            )
        seed = resolve_seed(s.seed)
        learning_rate = float(s.learning_rate if s.learning_rate is not None else module.LR)
        batch_size = int(s.batch_size or module.BATCH_SIZE)
        self.total_rounds = int(s.num_rounds or module.get_nb_max_rounds(s.num_updates, batch_size))
        self.plan = TrainPlan(
            dataset=s.dataset,
            seed=seed,
            learning_rate=learning_rate,
            num_updates=s.num_updates,
            batch_size=batch_size,
            personalization=self.personalization.to_dict() if self.personalization else None,
            strategy=self.strategy.name,
            hyperparameters=self.strategy.to_dict(),
        )
        from flamby_flare.pretrained import start_weights

        with refused_in_one_line(__name__):
            try:
                weights = start_weights(s.dataset, s.pretrained, s.pretrained_weights)
            except FlambyFlareError as exc:  # the ImageNet weights are not on the server: one line, at start
                raise SettingError(f"controllers.{type(self).__name__}: {exc}") from None
        self.pretrained_weights = str(weights) if weights is not None else None
        model = initial_model(module, seed, weights)
        self.keys = [name for name, _ in model.named_parameters()]
        params = to_numpy_state(model)
        initial_norm = weights_norm(params, self.keys)
        if s.homomorphic_encryption:  # before any round: a missing or secret-holding context is refused here
            from flamby_flare.homomorphic import ServerCiphertexts

            self.he = ServerCiphertexts.for_model(self.fl_ctx, params)
        state = self.strategy.initial_state(params, self.keys)
        self.record = RunRecord()
        self.checkpointer, checkpoint = open_run(
            resolve_state_root() / "server",
            self.run_prefix(),
            self.run_config(),
            s.resume,
            s.resume_run,
            s.checkpoint_dir,
        )
        self.plan = dataclasses.replace(self.plan, run_key=self.checkpointer.run_id)
        start_round = 0
        if checkpoint is not None:
            params, state, start_round = checkpoint.params, checkpoint.strategy_state, checkpoint.rounds_done
            if self.he:
                try:
                    params = self.he.restored(params)
                except HEError as exc:
                    raise RuntimeError(f"cannot resume from {self.checkpointer.path}: {exc}") from None
            self.record = RunRecord(checkpoint.history)
            self.roster.dropped = {**{site: start_round for site in self.roster.dropped}, **checkpoint.dropped}
        elif s.resume:
            self.info(
                f"resume: no unfinished run of this job to continue, starting at round 1 (run {self.checkpointer.run_id})"
            )
        self.info(
            f"{self.method_name} on {s.dataset}: {len(self.roster.sites)} sites, {self.total_rounds} rounds, seed {seed}, "
            f"run {self.checkpointer.run_id}" + (f", resuming after round {start_round}" if start_round else "")
        )
        try:
            self._run_rounds(module, seed, params, state, start_round, initial_norm)
        except (
            RunAborted
        ):  # an admin's abort, or the simulator stopping once its sites are gone: no result, a failed run
            done = len(self.record.history)
            kept = (
                f"its checkpoint after round {done} remains for a resume (resume_run: {self.checkpointer.run_id})"
                if done
                else "no round was completed, so there is nothing to resume"
            )
            raise RuntimeError(f"{RUN_STOPPED_EARLY} (its sites stopped, or the job was aborted); {kept}") from None
        finally:
            self.checkpointer.release()

    def _run_rounds(
        self, module, seed: int, params: NumpyState, state: dict, start_round: int, initial_norm: float
    ) -> None:
        start = time.monotonic()
        diverged_at = diverged_because = None
        self._first_task, self._walls = True, []
        stream = RunStream(self, self.fl_ctx, self.settings.results_dir or "")
        for entry in self.record.history:  # a resumed run's rounds, for a stream of its own
            stream.round(entry)
        for round_index in range(start_round, self.total_rounds):
            if self.abort_signal.triggered:
                raise RunAborted()
            round_start = time.monotonic()
            rng = np.random.default_rng(derive_seed(seed, round_index, 2))
            new, new_state, results, groups = play_round(
                self.strategy,
                params,
                state,
                round_index,
                self.roster.sites,
                rng,
                self.keys,
                self._train,
                skip=self.roster.dropped,
            )
            order = [site for group in groups for site in group] if len(groups) > 1 else None
            wall = time.monotonic() - round_start
            loss = self.record.add_round(round_index + 1, results, wall, order)
            self._walls.append(wall)
            cell = f"[{self.settings.results_dir}] " if self.settings.results_dir else ""  # a benchmark job's workflows
            self.info(cell + self.record.describe_round(self.total_rounds))
            stream.round(self.record.history[-1])
            diverged_because = divergence(loss, new, self.keys, initial_norm)
            if diverged_because is not None:
                diverged_at = round_index + 1
                self.warning(
                    f"training diverged in round {diverged_at} ({diverged_because}): stopping, metrics are NaN"
                )
                break
            params, state = new, new_state
            self.checkpointer.save(
                round_index + 1,
                self.he.stored(params) if self.he else params,
                state,
                self.record.history,
                self.roster.dropped,
            )
        sites = self.roster.sites
        if diverged_at is None:
            self.save_global_model(params, state)
            per_site, n_test, personalized = self.validate(params)
        else:
            per_site, n_test = dict.fromkeys(sites, math.nan), {}
            personalized = dict.fromkeys(sites, math.nan) if self.personalized else {}
        s = self.settings
        summary = {
            "dataset": s.dataset,
            "strategy": self.strategy.label,
            "method": self.method_name,
            "seed": seed,
            "run_id": self.checkpointer.run_id,
            "metric_name": module.METRIC_NAME,
            "per_site": per_site,
            "mean": mean_over_sites(per_site),
            "fairness": fairness(per_site),
            "personalization": self.personalization.label
            if self.personalization
            else (self.strategy.label if self.personalized else None),
            "per_site_personalized": personalized or None,
            "mean_personalized": mean_over_sites(personalized) if personalized else None,
            "fairness_personalized": fairness(personalized) if personalized else None,
            "n_test": n_test,
            "rounds": self.total_rounds,
            "num_updates": self.plan.num_updates,
            "batch_size": self.plan.batch_size,
            "pretrained_weights": self.pretrained_weights,
            "hyperparameters": self.hyperparameters(),
            "history": self.record.history,
            "diverged_at_round": diverged_at,
            "diverged_because": diverged_because,
            "resumed_after_round": start_round or None,
            "dropped_sites": dict(self.roster.dropped),
            "privacy": self.record.privacy_ledger(),
            "communication": self.record.communication(),
            "wall_time_s": round(time.monotonic() - start, 3),
        }
        stream.results(module.METRIC_NAME, per_site, summary["mean"], self.total_rounds)
        if personalized:
            stream.results(
                module.METRIC_NAME, personalized, summary["mean_personalized"], self.total_rounds, "_personalized"
            )
        write_results(self.output_dir(), summary)
        self.checkpointer.delete()
        self.info(f"results in {self.output_dir()}\n" + format_table(summary))

    # ---- where the run lives --------------------------------------------------------------------
    def job_name(self) -> str:
        meta = self.fl_ctx.get_prop(FLContextKey.JOB_META) or {}
        return str(meta.get("name") or Path(self.get_run_dir()).name)

    def run_prefix(self) -> str:
        """The start of this run's id: the job name, workflow ``results_dir`` and a digest of ``run_config``
        (a resume looks only among the runs that would compute the same numbers); ``open_run`` adds a random
        part, so that every run, even an identical one started at the same time, has its own state."""
        digest = hashlib.sha256(json.dumps(self.run_config(), sort_keys=True).encode()).hexdigest()[:8]
        return plain_name("-".join(part for part in (self.job_name(), self.settings.results_dir, digest) if part))

    def run_config(self) -> dict:
        """What a checkpoint must match to be resumed: everything that shapes the run's numbers."""
        plan = {
            f.name: getattr(self.plan, f.name)
            for f in dataclasses.fields(self.plan)
            if f.name not in ("run_key", "message")
        }
        return {
            "strategy": type(self).__name__,
            "plan": plan,
            "rounds": self.total_rounds,
            "hyperparameters": self.hyperparameters(),
            "sites": self.roster.sites,
            **({"pretrained_weights": self.pretrained_weights} if self.pretrained_weights else {}),
            **({"homomorphic_encryption": True} if self.settings.homomorphic_encryption else {}),
        }

    def output_dir(self) -> Path:
        """Where this workflow writes results: the run directory (or ``results_dir`` in it)."""
        path = Path(self.get_run_dir()) / (self.settings.results_dir or "")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def save_global_model(self, params: NumpyState, state: dict) -> Path:
        """``FL_global_model.pt`` in the run directory: {"model": state dict, "strategy_state": ..., "rounds": n}
        (under homomorphic encryption the model's encrypted entries as bytes, and ``he_shapes``)."""
        import torch

        path = self.output_dir() / GLOBAL_MODEL_FILE
        strategy_state = {name: to_tensors(value) for name, value in state.items()}
        saved = {
            "model": to_tensors(self.he.stored(params) if self.he else params),
            "strategy_state": strategy_state,
            "rounds": self.total_rounds,
        }
        if self.he:  # its encrypted entries are CKKS bytes: flamby_flare.homomorphic.decrypt_model, with a site's key
            saved["he_shapes"] = {k: list(v) for k, v in self.he.shapes.items() if is_ciphertext(params[k])}
        torch.save(saved, path)
        return path

    # ---- tasks ----------------------------------------------------------------------------------
    def _model(self, params: NumpyState, round_index: int, message: dict | None = None) -> FLModel:
        """A task's model: the global state (serialized ciphertexts and the sites' decryption meta under
        homomorphic encryption) and the run's plan."""
        plan = dataclasses.replace(self.plan, message=message) if message is not None else self.plan
        params, he_meta = self.he.outgoing(params) if self.he else (params, {})
        return FLModel(
            params_type=ParamsType.FULL,
            params=params,
            current_round=round_index,
            total_rounds=self.total_rounds,
            meta={**plan.to_meta(), **he_meta},
        )

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
        what = f"{task} (round {model.current_round + 1}): no valid result from {', '.join(missing)} within {timeout} s"
        try:
            self.roster.drop(missing, model.current_round + 1, what)
        except QuorumLost as exc:
            raise RuntimeError(str(exc)) from None
        self.warning(
            f"{what}: dropped for the rest of the run, continuing with {len(self.roster.active)} sites "
            f"(min_clients {self.roster.needed})"
        )
        return by_site

    def _train_timeout(self) -> int:
        """How long a ``train`` task may take before its sites count as lost (see ``LOST_SITE_FLOOR_S``)."""
        if self._first_task or not self._walls:
            return self.settings.train_timeout
        slowest = max(self._walls[1:] or self._walls)  # the first round of this process includes the sites' start
        return int(min(self.settings.train_timeout, max(LOST_SITE_FLOOR_S, math.ceil(LOST_SITE_FACTOR * slowest))))

    def _train(self, targets: list[str], params: NumpyState, message: dict, round_index: int) -> list[SiteResult]:
        """The ``train`` task with ``params`` and the round's plan to ``targets``; their results in site order."""
        replies = self._send(TASK_TRAIN, self._model(params, round_index, message), targets, self._train_timeout())
        self._first_task = False
        results = []
        for s in sort_sites(replies):
            reply = replies[s]
            loss = reply.metrics.get(METRIC_TRAIN_LOSS)
            if self.he:
                new = self.he.incoming(reply.params, reply.meta, s)
            else:
                new = add_update(params, reply.params) if reply.params_type == ParamsType.DIFF else reply.params
            results.append(
                SiteResult(
                    s,
                    new,
                    int(reply.meta[META_N_SAMPLES]),
                    None if loss is None else float(loss),
                    float(reply.metrics[METRIC_TRAIN_SECONDS]),
                    reply.meta,
                    reply.meta.get(META_REPORT) or {},
                    traffic=_traffic(reply.meta),
                )
            )
        return results

    def validate(self, params: NumpyState) -> tuple[dict[str, float], dict[str, int], dict[str, float]]:
        """The final model's metric on every site's local test set, in site order; with personalization also
        each site's personalized model's metric on it (else an empty dict)."""
        replies = self._send(
            TASK_VALIDATE, self._model(params, self.total_rounds), self.roster.active, self.settings.validate_timeout
        )
        sites = self.roster.sites
        per_site = {s: float(replies[s].metrics[METRIC_VALUE]) if s in replies else math.nan for s in sites}
        n_test = {s: int(replies[s].metrics[METRIC_N_TEST]) for s in sites if s in replies}
        personalized = {}
        if self.personalized:
            personalized = {
                s: float(replies[s].metrics.get(METRIC_PERSONALIZED, math.nan)) if s in replies else math.nan
                for s in sites
            }
        return per_site, n_test, personalized


def _traffic(meta: dict) -> dict | None:
    """The train task's and the result's serialized bytes, as the job's ``MessageSize`` filters measured
    them (None: the job has none)."""
    received, sent = meta.get(META_RECEIVED), meta.get(META_SENT)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (received, sent)):
        return None
    return {"received": received, "sent": sent}


def controller_for(strategy_class: type[Strategy]) -> type[StrategyController]:
    """The NVFlare controller class of ``strategy_class``: ``controllers.<its label>``."""
    cls = type(
        strategy_class.label,
        (StrategyController,),
        {
            "strategy_class": strategy_class,
            "__module__": "controllers",
            "__doc__": f"NVFlare workflow of {strategy_class.label} (``{strategy_class.__module__}``); see ``StrategyController``.",
        },
    )
    return cls
