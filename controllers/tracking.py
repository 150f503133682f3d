"""Metric streams of a run through NVFlare's experiment tracking: the controller sends, per round, the
training loss (the sample-weighted mean and each site's), each site's epsilon spent and the round's wall time,
and at the end each site's test metric and their mean, as NVFlare analytics events
(``nvflare.apis.utils.analytix_utils``); the receiver in the job writes them: ``TensorBoardReceiver`` (the
jobs' default: event files in ``<run dir>/tb_events/<site or server>/``).

The server streams what the sites already report with their results, so nothing new leaves a site, the
stream is the same whatever ``-t`` is, and no event can arrive after the run ended. Each value is recorded
under the site it belongs to (``server`` for the run's aggregates); NVFlare's receivers would file every
event the server fires under ``server``, so ours take the site from the event's header.
"""

from __future__ import annotations

import math

from nvflare.apis.analytix import AnalyticsDataType
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.apis.utils.analytix_utils import create_analytic_dxo, send_analytic_dxo
from nvflare.app_opt.tracking.tb.tb_receiver import TBAnalyticsReceiver

from flamby_flare.paths import METRIC_STREAMS_FOLDER

SITE_HEADER = "flamby_flare.stream_site"
SERVER = "server"


class RunStream:
    """Scalars of one run for the job's receiver; ``prefix`` (a benchmark cell's name) groups the tags of
    several runs in one job."""

    def __init__(self, component, fl_ctx: FLContext, prefix: str = ""):
        self.component, self.fl_ctx, self.prefix = component, fl_ctx, f"{prefix}/" if prefix else ""

    def scalar(self, tag: str, value: float | None, step: int, site: str = SERVER) -> None:
        if value is None or not math.isfinite(value):
            return
        dxo = create_analytic_dxo(self.prefix + tag, float(value), AnalyticsDataType.SCALAR, global_step=step)
        dxo.set_meta_prop(SITE_HEADER, site)
        send_analytic_dxo(self.component, dxo, self.fl_ctx)

    def round(self, entry: dict) -> None:
        """One entry of the run's history (``controllers.record.RunRecord``)."""
        step = entry["round"]
        self.scalar("train_loss", entry["train_loss"], step)
        self.scalar("round_seconds", entry["wall_s"], step)
        for site, loss in entry["per_site"].items():
            self.scalar("train_loss", loss, step, site)
        for site, records in entry.get("privacy", {}).items():
            for record in records:
                self.scalar(f"epsilon/{record['mechanism']}", record["epsilon"], step, site)

    def results(self, metric: str, per_site: dict[str, float], mean: float, step: int, suffix: str = "") -> None:
        """The final model's test metric per site and their unweighted mean."""
        for site, value in per_site.items():
            self.scalar(f"test_{metric}{suffix}", value, step, site)
        self.scalar(f"test_{metric}{suffix}_mean", mean, step)


def _site_of(shareable: Shareable, record_origin: str) -> str:
    from nvflare.apis.dxo import from_shareable

    site = from_shareable(shareable).get_meta_prop(SITE_HEADER)
    if site is None:
        return record_origin
    if not isinstance(site, str) or not (site == SERVER or (site.startswith("site-") and site[5:].isdigit())):
        raise ValueError(f"stream site {site!r} is not server or site-N")  # it becomes a folder name
    return site


class TensorBoardReceiver(TBAnalyticsReceiver):
    """NVFlare's TensorBoard receiver, filing each value under the site it belongs to."""

    def __init__(self, tb_folder: str = METRIC_STREAMS_FOLDER):
        super().__init__(tb_folder=tb_folder)

    def save(self, fl_ctx: FLContext, shareable: Shareable, record_origin: str):
        super().save(fl_ctx, shareable, _site_of(shareable, record_origin))
