"""The NVFlare executor of a FLamby site: ``train`` and ``validate`` tasks on the site's own center."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from nvflare.apis.event_type import EventType
from nvflare.apis.executor import Executor
from nvflare.apis.fl_constant import FLMetaKey, ReturnCode
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable, make_reply
from nvflare.apis.signal import Signal
from nvflare.app_common.abstract.fl_model import FLModel, ParamsType
from nvflare.app_common.utils.fl_model_utils import FLModelUtils

from executors import simulator_shim
from executors.settings import SiteSettings
from executors.trainer import SiteTrainer
from flamby_flare.errors import FlambyFlareError, site_message
from flamby_flare.paths import check_writable, resolve_state_root, site_setting
from flamby_flare.personalization import Personalization
from flamby_flare.protocol import (
    META_N_SAMPLES,
    META_PRIVACY,
    META_REPORT,
    METRIC_EPSILON,
    METRIC_N_TEST,
    METRIC_PERSONALIZED,
    METRIC_TRAIN_LOSS,
    METRIC_TRAIN_SECONDS,
    METRIC_VALUE,
    PROP_TRAIN_INPUT,
    TASK_TRAIN,
    TASK_VALIDATE,
    TrainInput,
    TrainPlan,
    error_reply,
)
from flamby_flare.settings import refused_in_one_line
from flamby_flare.sites import center_of


class FlambySiteExecutor(Executor):
    """Serves ``dataset``'s center for this site (``site-k`` -> center k-1).

    A site that cannot serve (no data, a failed task) answers with a one-line reason naming itself
    (``META_ERROR``), and the controller ends the run with it: the user sees why at once rather than a
    timeout. The reason holds only this project's own messages (files, rows, columns, settings), never a data
    value: any other exception is told by its type alone; the site's own log has the details.

    Arguments: ``executors.settings.SiteSettings``'s (dataset, data_root, device, num_threads, dp_sgd,
    num_workers, precision, dataset_args, model_args), checked at job start: an unknown name or a bad value
    is refused in one line naming it. The data root is the ``data_root`` argument, else the one the site's
    startup kit names in ``local/flamby_flare.json``, else ``FLAMBY_FLARE_DATA``, else the per-user cache.
    Run state that outlives the job (see ``TrainPlan.run_key``) goes to the kit's ``state_dir``, else
    ``<state root>/<site>`` (``flamby_flare.paths``); the site deletes a run's state once it validates the
    final model.

    The global model of each ``train`` task is left in the task's context for the site's result filters
    (``protocol.PROP_TRAIN_INPUT``; ``privacy.ClientLevelDP`` uses it).
    """

    def __init__(self, dataset: str, **settings):
        super().__init__()
        simulator_shim.apply_worker()  # in NVFlare's simulator only: its fixed waits (see the module)
        with refused_in_one_line(__name__):
            self.settings = SiteSettings.from_arguments(
                {"dataset": dataset, **settings}, "executors.FlambySiteExecutor"
            )
        self._trainer: SiteTrainer | None = None
        self._setup_error: str | None = None

    def handle_event(self, event_type: str, fl_ctx: FLContext) -> None:
        if event_type == EventType.START_RUN:
            try:
                self._get_trainer(fl_ctx)
            except Exception as exc:  # noqa: BLE001 - told to the server with the first task, naming the site
                if isinstance(exc, FlambyFlareError):  # a missing dataset, a bad setting: its one line says what to do
                    self.log_error(fl_ctx, f"setting up: {exc}")
                else:
                    self.log_exception(fl_ctx, f"setting up: {exc}")
                self._setup_error = f"{fl_ctx.get_identity_name()}: {site_message(exc)}"

    def _get_trainer(self, fl_ctx: FLContext) -> SiteTrainer:
        if self._trainer is None:
            torch.set_num_threads(self.settings.num_threads)
            site = fl_ctx.get_identity_name()
            workspace = fl_ctx.get_engine().get_workspace()
            local = workspace.get_site_config_dir()
            settings = self.settings
            if settings.data_root is None and site_setting(local, "data_root"):
                settings = dataclasses.replace(settings, data_root=site_setting(local, "data_root"))
            state_dir = check_writable(
                site_setting(local, "state_dir") or resolve_state_root() / site, "site's state folder"
            )
            self._trainer = SiteTrainer(settings, center_of(site), state_dir=state_dir)
            self.log_info(
                fl_ctx,
                f"{site} = {settings.dataset} center {self._trainer.center}: "
                f"{self._trainer.n_train} train / {self._trainer.n_test} test samples on {self._trainer.device} "
                f"({self._trainer.precision}, {self._trainer.num_workers} loader workers)",
            )
        return self._trainer

    def execute(self, task_name: str, shareable: Shareable, fl_ctx: FLContext, abort_signal: Signal) -> Shareable:
        if task_name not in (TASK_TRAIN, TASK_VALIDATE):
            return make_reply(ReturnCode.TASK_UNKNOWN)
        if self._setup_error:
            return error_reply(self._setup_error)
        try:
            trainer = self._get_trainer(fl_ctx)
            incoming = FLModelUtils.from_shareable(shareable)
            if task_name == TASK_TRAIN:
                plan = TrainPlan.from_meta(incoming.meta)
                round_index, total_rounds = incoming.current_round, incoming.total_rounds
                fl_ctx.set_prop(
                    PROP_TRAIN_INPUT,
                    TrainInput(
                        incoming.params,
                        round_index,
                        total_rounds,
                        plan,
                        trainer.center,
                        trainer.state(plan),
                    ),
                    private=True,
                    sticky=False,
                )
                result = trainer.train(incoming.params, plan, round_index, total_rounds)
                reply = self._train_reply(result)
            else:
                plan = TrainPlan.from_meta(incoming.meta)
                metrics = {METRIC_VALUE: trainer.evaluate(incoming.params), METRIC_N_TEST: trainer.n_test}
                personalized = trainer.personalize(incoming.params, plan, incoming.total_rounds)
                if personalized is not None:  # evaluated here and kept in the site's workspace; never sent
                    metrics[METRIC_PERSONALIZED] = trainer.evaluate(personalized)
                    self._keep(personalized, plan, fl_ctx)
                reply = FLModel(metrics=metrics)
                trainer.forget(plan)  # the run is over: its site state can go
            return FLModelUtils.to_shareable(reply)
        except Exception as exc:  # noqa: BLE001 - the server ends the run with this line (no data value in it)
            self.log_exception(fl_ctx, f"{task_name} failed: {exc}")
            return error_reply(f"{fl_ctx.get_identity_name()}: {task_name} failed: {site_message(exc)}")

    def _keep(self, params, plan: TrainPlan, fl_ctx: FLContext) -> None:
        """The personalized model, in the site's run directory: ``<run key>_personalized_model.pt``."""
        workspace = fl_ctx.get_engine().get_workspace()
        path = check_writable(workspace.get_run_dir(fl_ctx.get_job_id()), "site's run directory") / (
            f"{plan.run_key}_personalized_model.pt" if plan.run_key else "personalized_model.pt"
        )
        torch.save(
            {
                "model": {k: torch.from_numpy(np.asarray(v)) for k, v in params.items()},
                "personalization": plan.personalization,
            },
            path,
        )
        label = Personalization.from_dict(plan.personalization).label if plan.personalization else plan.strategy
        self.log_info(fl_ctx, f"personalized model ({label}) saved to {path}")

    @staticmethod
    def _train_reply(result) -> FLModel:
        """The model state and the declared scalars only: nothing per sample leaves the site."""
        meta = {META_N_SAMPLES: result.n_samples, FLMetaKey.NUM_STEPS_CURRENT_ROUND: result.num_updates}
        metrics = {METRIC_TRAIN_SECONDS: result.seconds}
        if result.release_loss:
            metrics[METRIC_TRAIN_LOSS] = result.loss
        if result.report:
            meta[META_REPORT] = result.report
        if result.privacy:
            meta[META_PRIVACY] = result.privacy
            metrics[METRIC_EPSILON] = max(record["epsilon"] for record in result.privacy)
        return FLModel(params_type=ParamsType.FULL, params=result.params, metrics=metrics, meta=meta)
