"""The run's metric streams (``controllers.tracking``) written to MLflow instead of TensorBoard: the job
option ``tracking="mlflow"`` (``flamby-flare jobs --tracking mlflow``) puts this receiver on the server.

NVFlare's ``MLflowReceiver`` opens one MLflow run per site of the job; ours adds one for ``server`` (the
run's aggregates), files every value under the site it belongs to, as the TensorBoard receiver does, and
listens to the server's own analytics events (NVFlare's listens to the sites' only, which send none here).
By default the runs go to a SQLite store in the server's run directory (``<run dir>/mlflow.db``, read with
``mlflow ui --backend-store-uri sqlite:///<run dir>/mlflow.db``); ``tracking_uri`` names a tracking server
instead (``http://`` or ``https://`` only: the job file cannot make the server write a file elsewhere).
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


class MLflowReceiver(_NVFlareMLflowReceiver):
    """NVFlare's MLflow receiver with a run for ``server`` and each value filed under its site."""

    def __init__(self, tracking_uri: str | None = None, experiment_name: str = EXPERIMENT):
        check_tracking_uri(tracking_uri)
        if not isinstance(experiment_name, str) or not experiment_name.strip():
            raise ValueError(f"experiment_name must be a non-empty string, got {experiment_name!r}")
        super().__init__(tracking_uri=tracking_uri, kw_args={"experiment_name": experiment_name},
                         artifact_location="mlflow_artifacts", events=[ANALYTIC_EVENT_TYPE, f"fed.{ANALYTIC_EVENT_TYPE}"])

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
