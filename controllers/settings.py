"""A run's settings on the server (the controller's arguments besides the strategy's hyperparameters), one
frozen dataclass validated when the job starts: each bad value is refused in one line naming it."""

from __future__ import annotations

from dataclasses import dataclass

from flamby_flare.datasets import DATASETS
from flamby_flare.settings import SettingError, Settings, setting


@dataclass(frozen=True)
class RunSettings(Settings):
    """Args:
    dataset: FLamby dataset name; the job's sites must be exactly ``site-1 .. site-NUM_CLIENTS``.
    num_rounds: rounds to run (None: FLamby's ``get_nb_max_rounds(num_updates)``).
    num_updates: local SGD batch updates per site and round (FLamby's benchmark: 100).
    learning_rate: the sites' SGD lr (None: the dataset's ``LR``).
    batch_size: local batch size (None: the dataset's ``BATCH_SIZE``).
    seed: run seed (None: ``FLAMBY_FLARE_SEED``, else 42).
    train_timeout, validate_timeout: seconds a task may take before its sites count as lost.
    task_check_period: how often the controller polls its tasks, in seconds.
    results_dir: sub-folder of the run directory for this workflow's results and checkpoint (several
        workflows in one job, e.g. the cells of a benchmark, each write their own): a plain name.
    min_clients: the fewest sites a round may aggregate (None: all of them).
    resume: continue the only unfinished run of this job and settings (none: a fresh start; several:
        refused, naming them).
    resume_run: continue the run of this id (printed at its start and in its summary).
    checkpoint_dir: the folder of the server's state root (``<state root>/server/<name>``) where the per-round
        checkpoint lives, a plain name (None: the run's own folder there, named by its id).
    personalization: ``flamby_flare.personalization.Personalization``'s fields, sent to the sites.
    pretrained: start from FLamby's ImageNet weights where the baseline has them (Fed-ISIC2019:
        ``<data root>/pretrained/``, fetched by ``flamby-flare download``); False: from scratch.
    pretrained_weights: the initial model's weights, a local file on the server (Fed-ISIC2019), instead.
    homomorphic_encryption: secure aggregation: the sites' updates and the global model stay encrypted
        on the server (``flamby_flare.homomorphic``; the sites' job config has its filters).
    """

    dataset: str = setting("str", help="FLamby dataset")
    num_rounds: int | None = setting("int", None, low=1, help="rounds (default: FLamby's get_nb_max_rounds)")
    num_updates: int = setting("int", 100, low=1, help="local updates per site and round (default: FLamby's, 100)")
    learning_rate: float | None = setting(
        "float", None, low=0.0, low_open=True, help="the sites' lr (default: FLamby's for the dataset and strategy)"
    )
    batch_size: int | None = setting(
        "int", None, low=1, help="local batch size (default: the dataset's FLamby BATCH_SIZE)"
    )
    seed: int | None = setting("int", None, help="run seed (default: $FLAMBY_FLARE_SEED, else 42)")
    train_timeout: int = setting(
        "int",
        1800,
        low=1,
        help="seconds a train task may take (default: 600 for the tabular datasets, 3600 for the others)",
    )
    validate_timeout: int = setting(
        "int",
        600,
        low=1,
        help="seconds a validate task may take (default: 300 for the tabular datasets, 1800 for the others)",
    )
    task_check_period: float = setting(
        "float", 0.005, low=0.0, low_open=True, help="task polling period, seconds (default: 0.005)"
    )
    results_dir: str | None = setting("str", None, help="sub-folder of the run directory for the results")
    min_clients: int | None = setting(
        "int", None, low=1, help="fewest sites a round may aggregate (default: all of them)"
    )
    resume: bool = setting("bool", False, help="continue the only unfinished run of this job and its settings")
    resume_run: str | None = setting(
        "str", None, help="continue this run (its id, printed at its start; default: a new run)"
    )
    checkpoint_dir: str | None = setting(
        "str", None, help="folder of the server's state root for the per-round checkpoint"
    )
    personalization: dict | None = setting("dict", None, help="personalization settings")
    pretrained: bool = setting(
        "bool", True, help="start from FLamby's ImageNet weights where the baseline has them (Fed-ISIC2019)"
    )
    pretrained_weights: str | None = setting(
        "str",
        None,
        help="initial weights, a local file on the server (default: FLamby's ImageNet weights where the "
        "baseline has them, else its initial model from the seed)",
    )
    homomorphic_encryption: bool = setting(
        "bool", False, help="secure aggregation: the server holds only encrypted updates (CKKS)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dataset not in DATASETS:
            raise SettingError(f"unknown dataset {self.dataset!r}; known datasets: {', '.join(DATASETS)}")
        from flamby_flare.personalization import Personalization

        Personalization.from_dict(self.personalization)  # bad personalization settings are refused here too
        from flamby_flare.paths import is_plain_name

        if self.resume_run is not None and not is_plain_name(self.resume_run):
            raise SettingError(
                "resume_run must be a run id (letters, digits, '.', '_', '-'), as printed at the run's start"
            )
        for name, where in (
            ("results_dir", "a sub-folder of the run directory"),
            ("checkpoint_dir", "a folder of the server's state root"),
        ):
            value = getattr(self, name)
            if value is not None and not is_plain_name(
                value
            ):  # a job never writes (or deletes) outside the run's folders
                raise SettingError(
                    f"{name} must be {where}, a plain name (letters, digits, '.', '_', '-'), got {value!r}"
                )


def split_arguments(strategy_class, dataset: str, arguments: dict, what: str):
    """A controller's arguments checked and split: ``(RunSettings, the strategy)``; an argument neither
    takes is refused, naming the known ones."""
    import dataclasses

    run_names = set(RunSettings.names())
    strategy_names = {f.name for f in dataclasses.fields(strategy_class)}
    unknown = sorted(set(arguments) - run_names - strategy_names)
    if unknown:
        raise SettingError(
            f"{what}: unknown argument(s) {', '.join(unknown)}; known: {', '.join(sorted(run_names | strategy_names))}"
        )
    settings = RunSettings.from_arguments(
        {"dataset": dataset, **{k: v for k, v in arguments.items() if k in run_names}}, what
    )
    strategy = strategy_class.from_arguments({k: v for k, v in arguments.items() if k in strategy_names}, what)
    return settings, strategy
