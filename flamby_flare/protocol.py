"""What the server and the sites say to each other: task names, meta keys and the training plan.

The server owns the job's hyperparameters and sends them with every ``train`` task, so a site's
configuration holds only what is local to it (data root, device).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from nvflare.apis.shareable import Shareable
from nvflare.app_common.abstract.fl_model import FLModel
from nvflare.app_common.utils.fl_model_utils import FLModelUtils

TASK_TRAIN = "train"
TASK_VALIDATE = "validate"

META_PLAN = "flamby_plan"
META_N_SAMPLES = "n_samples"  # train: the site's train-set size (FLamby's aggregation weight)
METRIC_TRAIN_LOSS = "train_loss"  # train: mean loss over the round's local updates
METRIC_TRAIN_SECONDS = "train_seconds"  # train: local compute time of the round
METRIC_VALUE = "metric"  # validate: the dataset metric on the site's local test set
METRIC_N_TEST = "n_test"
METRIC_PERSONALIZED = "metric_personalized"  # validate: the same metric of the site's personalized model
META_ERROR = "flamby_error"  # any task: the site cannot serve it; the one-line reason, starting with the site
META_PRIVACY = "flamby_privacy"  # train: ledger records of the DP mechanisms the site applied (privacy.accounting)
META_REPORT = (
    "flamby_report"  # train: what the strategy's site rule reports besides the model (SCAFFOLD's control update)
)
METRIC_EPSILON = "epsilon"  # train: the largest epsilon any of them has spent so far
PROP_TRAIN_INPUT = "flamby_flare.train_input"  # site FLContext (private): the TrainInput of the task being served


@dataclass(frozen=True)
class TrainPlan:
    """A round's instructions, the one channel from the server to the sites: ``num_updates`` SGD batch
    updates of size ``batch_size``, under the strategy ``strategy`` (a registered name, see
    ``flamby_flare.strategies``) with its ``hyperparameters`` and this round's ``message`` from its server
    rule (e.g. SCAFFOLD's global control), and the run's ``personalization``.

    ``run_key`` names the run across restarts (job name and workflow): a site keeps the state that must
    outlive its process and the job (SCAFFOLD's control) under it, so a resumed job finds it again.
    """

    dataset: str
    seed: int
    learning_rate: float
    num_updates: int
    batch_size: int
    run_key: str = ""
    personalization: dict | None = None  # flamby_flare.personalization.Personalization's fields
    strategy: str = "fedavg"
    hyperparameters: dict = field(default_factory=dict)
    message: dict = field(default_factory=dict)

    def to_meta(self) -> dict:
        return {META_PLAN: {f.name: getattr(self, f.name) for f in fields(self)}}

    @classmethod
    def from_meta(cls, meta: dict) -> "TrainPlan":
        if META_PLAN not in meta:
            raise ValueError("train task carries no flamby_plan: is the server running a flamby-flare controller?")
        values = meta[META_PLAN]
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values or f.default is MISSING})


@dataclass(frozen=True)
class TrainInput:
    """What a site's executor received for a ``train`` task, left in the task's ``FLContext`` (under
    ``PROP_TRAIN_INPUT``) for the site's result filters: the global model ``params``, the round, the plan,
    the site's center and its run state (``executors.site_state.SiteState``)."""

    params: dict
    round_index: int
    total_rounds: int
    plan: TrainPlan
    center: int
    state: Any


def error_reply(message: str) -> Shareable:
    """A reply the controller turns into the run's failure, with ``message`` (one line, naming the site)."""
    return FLModelUtils.to_shareable(FLModel(metrics={META_ERROR: 1.0}, meta={META_ERROR: message}))
