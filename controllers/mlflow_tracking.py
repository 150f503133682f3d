"""The run's metric streams (``controllers.tracking``) written to MLflow instead of TensorBoard: the job
option ``tracking="mlflow"`` (``flamby-flare jobs --tracking mlflow``) puts this receiver on the server.

NVFlare's ``MLflowReceiver`` opens one MLflow run per site of the job; ours adds one for ``server`` (the
run's aggregates), files every value under the site it belongs to, as the TensorBoard receiver does, and
listens to the server's own analytics events (NVFlare's listens to the sites' only, which send none here).
By default the runs go to a SQLite store in the server's run directory (``<run dir>/mlflow.db``, read with
``mlflow ui --backend-store-uri sqlite:///<run dir>/mlflow.db``); ``tracking_uri`` names a tracking server
instead (``http://`` or ``https://`` only: the job file cannot make the server write a file elsewhere). A
tracking server that does not answer within ``ANSWER_TIMEOUT_S`` fails the run at its start, naming it
(NVFlare's receiver would wait out MLflow's retries, minutes, log the failure and train on, tracking nothing).
Needs the ``mlflow`` extra: ``pip install 'flamby-flare[mlflow]'``.
"""

from __future__ import annotations

import os

from flamby_flare.datasets.lazy import check_installed

check_installed(__name__, ("mlflow", "sqlalchemy", "alembic"))

from nvflare.apis.analytix import ANALYTIC_EVENT_TYPE  # noqa: E402
from nvflare.apis.fl_context import FLContext  # noqa: E402
from nvflare.apis.shareable import Shareable  # noqa: E402
from nvflare.app_opt.tracking.mlflow.mlflow_receiver import MLflowReceiver as _NVFlareMLflowReceiver  # noqa: E402

from controllers.tracking import SERVER, _site_of  # noqa: E402
from flamby_flare.paths import MLFLOW_STORE, check_tracking_uri  # noqa: E402

EXPERIMENT = "flamby-flare"
ANSWER_TIMEOUT_S = 5.0  # seconds a tracking server has to answer at the run's start


def check_answers(uri: str, timeout: float = ANSWER_TIMEOUT_S) -> None:
    """An HTTP answer of any status from ``uri``'s ``/health`` (an MLflow server's) within ``timeout``; else
    one line naming the address and why."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answered
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise RuntimeError(
            f"the MLflow tracking server {uri} does not answer ({reason}): start it, or write the job "
            "with another --tracking-uri or --tracking tensorboard"
        ) from None


class MLflowReceiver(_NVFlareMLflowReceiver):
    """NVFlare's MLflow receiver with a run for ``server`` and each value filed under its site."""

    def __init__(self, tracking_uri: str | None = None, experiment_name: str = EXPERIMENT):
        check_tracking_uri(tracking_uri)
        if not isinstance(experiment_name, str) or not experiment_name.strip():
            raise ValueError(f"experiment_name must be a non-empty string, got {experiment_name!r}")
        super().__init__(
            tracking_uri=tracking_uri,
            kw_args={"experiment_name": experiment_name},
            artifact_location="mlflow_artifacts",
            events=[ANALYTIC_EVENT_TYPE, f"fed.{ANALYTIC_EVENT_TYPE}"],
        )

    def _handle_start_run_event(self, fl_ctx: FLContext) -> None:
        """NVFlare's, except that a receiver that cannot start fails the run at once, naming why."""
        try:
            if self.tracking_uri:
                check_answers(self.tracking_uri)
                os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")  # not MLflow's minutes of them later
            self.initialize(fl_ctx)
        except Exception as exc:  # noqa: BLE001 - the run's one line
            self.system_panic(f"MLflow tracking cannot start: {exc}", fl_ctx)
            return
        self._initialized = True

    def _get_tracking_uri(self, fl_ctx: FLContext) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        run_dir = fl_ctx.get_engine().get_workspace().get_run_dir(fl_ctx.get_job_id())
        return f"sqlite:///{os.path.abspath(os.path.join(run_dir, MLFLOW_STORE))}"

    def _mlflow_setup(self, art_full_path, experiment_name, experiment_tags, site_names, fl_ctx):
        super()._mlflow_setup(art_full_path, experiment_name, experiment_tags, [SERVER, *site_names], fl_ctx)

    def _init_buffer(self, site_names):
        super()._init_buffer([SERVER, *site_names])

    def save(self, fl_ctx: FLContext, shareable: Shareable, record_origin: str):
        super().save(fl_ctx, shareable, _site_of(shareable, record_origin))
