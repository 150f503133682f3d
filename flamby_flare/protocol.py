"""What the server and the sites say to each other: task names, meta keys and the training plan.

The server owns the job's hyperparameters and sends them with every ``train`` task, so a site's
configuration holds only what is local to it (data root, device).
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, fields

TASK_TRAIN = "train"
TASK_VALIDATE = "validate"

META_PLAN = "flamby_plan"
META_N_SAMPLES = "n_samples"  # train: the site's train-set size (FLamby's aggregation weight)
METRIC_TRAIN_LOSS = "train_loss"  # train: mean loss over the round's local updates
METRIC_TRAIN_SECONDS = "train_seconds"  # train: local compute time of the round
METRIC_VALUE = "metric"  # validate: the dataset metric on the site's local test set
METRIC_N_TEST = "n_test"
META_ERROR = "flamby_error"  # any task: the site cannot serve it; the one-line reason, starting with the site


@dataclass(frozen=True)
class TrainPlan:
    """Local training for one round: ``num_updates`` SGD batch updates of size ``batch_size``.

    ``run_key`` names the run across restarts (job name and workflow): a site keeps the state that must
    outlive its process and the job (SCAFFOLD's control) under it, so a resumed job finds it again.
    """

    dataset: str
    seed: int
    learning_rate: float
    num_updates: int
    batch_size: int
    run_key: str = ""

    def to_meta(self) -> dict:
        return {META_PLAN: asdict(self)}

    @classmethod
    def from_meta(cls, meta: dict) -> "TrainPlan":
        if META_PLAN not in meta:
            raise ValueError("train task carries no flamby_plan: is the server running a flamby-flare controller?")
        values = meta[META_PLAN]
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values or f.default is MISSING})
