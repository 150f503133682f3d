"""A site's local training and evaluation, in plain PyTorch (no NVFlare), so tests drive it directly."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from executors.batch_loader import auto_workers, load_batches
from executors.batch_stream import BatchStream
from executors.personalization import SitePersonalization
from executors.settings import SiteSettings
from executors.site_state import SiteState
from flamby_flare.datasets import get_dataset
from flamby_flare.datasets.tensor_dataset import uses_batch_seed
from flamby_flare.download import REHASH_AT_START_BYTES, check_dataset_files
from flamby_flare.evaluation import evaluate
from flamby_flare.local_training import SGD, SGDStep, dataset_loss, local_steps, mean_loss
from flamby_flare.model_state import NumpyState, load_numpy_state, to_numpy_state
from flamby_flare.paths import dataset_dir, run_folder
from flamby_flare.personalization import Personalization
from flamby_flare.protocol import TrainPlan
from flamby_flare.seeding import derive_seed, set_seed
from flamby_flare.settings import SettingError
from flamby_flare.strategies.base import LocalRound, make_strategy
from privacy.accounting import digest
from privacy.dp_sgd import DPSGDConfig, DPSGDRound, check_private_model


def resolve_device(device: str = "auto", center: int = 0) -> torch.device:
    """``"auto"``: CPU without CUDA; with CUDA, center k takes GPU k mod (number of GPUs), so the sites of a
    simulator run spread over a multi-GPU machine. Otherwise any torch device string (``"cuda:1"``)."""
    if device == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        return torch.device(f"cuda:{center % torch.cuda.device_count()}")
    return torch.device(device)


@dataclass
class TrainResult:
    params: NumpyState
    n_samples: int
    loss: float
    num_updates: int
    seconds: float
    report: dict = field(default_factory=dict)  # what the strategy's site rule reports (SCAFFOLD: c_i+ - c_i)
    privacy: list[dict] = field(default_factory=list)  # ledger records of the DP mechanisms applied
    release_loss: bool = True  # False: DP is on and the loss must stay at the site


class SiteTrainer:
    """FLamby center ``center`` of ``dataset``: its train and test sets and its copy of the baseline.

    Training follows FLamby's client: plain SGD (no momentum, no weight decay) with the plan's lr for
    ``num_updates`` batch updates, the batches streaming on across rounds (see ``BatchStream``), through the
    one local loop (``flamby_flare.local_training``). All randomness of round r comes from ``(seed, center,
    r)``, and state that must persist (SCAFFOLD's c_i) lives in ``state_dir/<plan.run_key>``, one version per
    round (round r reads what round r - 1 wrote), so results depend neither on process lifetime nor on a
    server restart that repeats a round.

    The plan's strategy (a registered name, checked) gives the site rule that hooks into the loop (FedProx's
    penalty, SCAFFOLD's correction); the plan's personalization adds its own (``executors.personalization``).
    ``dp_sgd``: each step is DP-SGD's (``privacy.dp_sgd``): Poisson-sampled batches, per-sample clipping and
    noise, the privacy spent booked in the run state and reported with the result.

    Settings (``executors.settings.SiteSettings``, validated once): given as one ``settings`` object, or as
    keywords (``SiteTrainer("fed_heart_disease", 0, data_root, device="cpu", dp_sgd=...)``). ``num_workers``:
    DataLoader processes loading the batches (None: ``batch_loader.auto_workers``); results do not depend on
    it. ``precision``: ``"fp32"``, or ``"bf16"`` for bfloat16 autocast of the forward passes (training and
    evaluation; the weights, optimizer and exchanged model stay float32). ``dataset_args``: extra arguments
    of the dataset class (e.g. Fed-KITS19's ``patch_size``); ``model_args``: of the baseline model's (e.g.
    Fed-Camelyon16's ``mask_padding``; never its shapes: the server builds the initial model).
    """

    def __init__(
        self,
        dataset: str | SiteSettings,
        center: int,
        data_root: str | os.PathLike | None = None,
        device: str | None = None,
        *,
        eval_batch_size: int | None = None,
        state_dir: str | os.PathLike | None = None,
        **settings,
    ):
        if isinstance(dataset, SiteSettings):
            self.settings = dataset
        else:
            if isinstance(settings.get("dp_sgd"), DPSGDConfig):
                settings["dp_sgd"] = dataclasses.asdict(settings["dp_sgd"])
            settings.update(
                {k: v for k, v in (("data_root", data_root and str(data_root)), ("device", device)) if v is not None}
            )
            self.settings = SiteSettings(dataset=dataset, **settings)
        s = self.settings
        self.dataset_name = s.dataset
        self.module = get_dataset(s.dataset)
        self.center = center
        folder = dataset_dir(s.dataset, s.data_root)
        if not hasattr(self.module, "preprocess"):  # read from its raw files (the tabular datasets; the image ones
            # read a cache that records its raw files' hashes): re-hashed at every start when they are small, else
            # checked by their stat (download.file_ok); `flamby-flare verify NAME` re-hashes everything
            check_dataset_files(
                self.module.SOURCE, folder, self._raw_centers(center), rehash_up_to=REHASH_AT_START_BYTES
            )
        dataset_args = s.dataset_args or {}
        self.train_set = self.module.FedClass(center=center, train=True, data_path=folder, **dataset_args)
        self.test_set = self.module.FedClass(center=center, train=False, data_path=folder, **dataset_args)
        self.batch_seeds = uses_batch_seed(self.train_set)  # False: its batches get no augmentation seed (unused)
        self.device = resolve_device(s.device, center)
        self.precision = s.precision
        self.num_workers = auto_workers(self.train_set, self.device) if s.num_workers is None else s.num_workers
        self.model = self.module.Baseline(**(s.model_args or {})).to(self.device)
        self.loss_fn = self.module.BaselineLoss()
        self.eval_batch_size = eval_batch_size or self.module.BATCH_SIZE
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self._memory_state = SiteState(None)
        self.dp_sgd = s.dp
        self._personalization: SitePersonalization | None = None
        if self.dp_sgd is not None:
            check_private_model(self.model)

    def _raw_centers(self, center: int) -> list[int] | None:
        """The centers whose raw files this site holds (None: the dataset is one file set)."""
        return [center] if self.module.SOURCE.center_files is not None else None

    @property
    def n_train(self) -> int:
        return len(self.train_set)

    @property
    def n_test(self) -> int:
        return len(self.test_set)

    def train(self, params: NumpyState, plan: TrainPlan, round_index: int, total_rounds: int = 0) -> TrainResult:
        """One round (of ``total_rounds``) of local training from ``params``; returns the new full model state."""
        if plan.dataset != self.dataset_name:
            raise SettingError(f"server plans {plan.dataset!r} but this site serves {self.dataset_name!r}")
        rule = make_strategy(plan.strategy, plan.hyperparameters).site_rule(plan.message)
        state = self.state(plan)
        personalization = self.personalization(plan)
        received = params  # the server's model (FedBN starts from it with this site's own normalization layers)
        if personalization is not None:
            params = personalization.before_training(received, state, round_index)
        load_numpy_state(self.model, params)
        self.model.train()
        set_seed(derive_seed(plan.seed, self.center, round_index, 1))
        local = LocalRound(
            params,
            self.model,
            state,
            round_index,
            plan.learning_rate,
            plan.num_updates,
            data_loss=lambda: self.data_loss(plan, round_index),
        )
        rule.begin(local)
        # Opacus wraps a torch optimizer; without DP, the same plain SGD without building one (local_training.SGD)
        sgd = torch.optim.SGD if self.dp_sgd is not None else SGD
        optimizer = sgd(self.model.parameters(), lr=plan.learning_rate)
        start = time.perf_counter()
        if self.dp_sgd is not None:
            step = DPSGDRound(
                self.dp_sgd,
                self.model,
                optimizer,
                n_samples=self.n_train,
                batch_size=plan.batch_size,
                num_updates=plan.num_updates,
                total_rounds=total_rounds,
                round_index=round_index,
                seed=derive_seed(plan.seed, self.center, round_index, 3),
                state=state,
                input_digest=digest(received),
            )
            batches = ((indices, derive_seed(step.augmentation_seed, i)) for i, indices in enumerate(step.batches()))
        else:
            step = SGDStep(optimizer)
            stream = BatchStream(self.n_train, plan.batch_size, derive_seed(plan.seed, self.center))
            batches = stream.seeded(
                start=round_index * plan.num_updates, count=plan.num_updates, seeds=self.batch_seeds
            )
        total, count = local_steps(self.model, self.load(batches), self.loss_fn, rule, step, self.autocast)
        privacy = [step.finish()] if self.dp_sgd is not None else []
        seconds = time.perf_counter() - start
        new_params = to_numpy_state(self.model)
        report = rule.finish(local, new_params)
        if personalization is not None:
            personalization.after_training(received, new_params, plan, state, round_index)
        release = self.dp_sgd is None or self.dp_sgd.release_train_loss
        return TrainResult(
            new_params, self.n_train, mean_loss(total, count), plan.num_updates, seconds, report, privacy, release
        )

    def data_loss(self, plan: TrainPlan, round_index: int) -> float:
        """The model's loss as it stands over the whole train set, in ``plan``'s batch size (a site rule's
        ``LocalRound.data_loss``). Refused under DP-SGD: its sites release no un-noised loss."""
        if self.dp_sgd is not None:
            raise SettingError(
                f"{plan.strategy} needs each site's loss on its training data, which a site under "
                "DP-SGD does not release (the accountant does not cover it)"
            )
        seed = derive_seed(plan.seed, self.center, round_index, 6)
        batches = (
            (torch.arange(i, min(i + plan.batch_size, self.n_train)), seed)
            for i in range(0, self.n_train, plan.batch_size)
        )
        return dataset_loss(self.model, self.load(batches), self.loss_fn, self.autocast)

    def load(self, batches):
        """``(X, y)`` on the site's device for each ``(indices, seed)`` of the train set."""
        return load_batches(self.train_set, batches, self.device, self.num_workers)

    def autocast(self):
        """bfloat16 autocast when ``precision`` is ``"bf16"``, else nothing."""
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _state_folder(self, plan: TrainPlan) -> Path | None:
        if self.state_dir is None:
            return None
        return run_folder(self.state_dir, plan.run_key)

    def state(self, plan: TrainPlan) -> SiteState:
        """The site's state for ``plan``'s run (SCAFFOLD's control, DP accountants)."""
        folder = self._state_folder(plan)
        return SiteState(folder) if folder is not None else self._memory_state

    def forget(self, plan: TrainPlan) -> None:
        """Delete the state this site keeps for ``plan``'s run (once the run is over)."""
        folder = self._state_folder(plan)
        if folder is not None and plan.run_key and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
        self._memory_state = SiteState(None)

    def personalization(self, plan: TrainPlan) -> SitePersonalization | None:
        """The plan's personalization on this site (None: none)."""
        config = Personalization.from_dict(plan.personalization)
        if config is None:
            return None
        if self._personalization is None or self._personalization.config != config:
            self._personalization = SitePersonalization(self, config)
        return self._personalization

    def personalize(self, params: NumpyState, plan: TrainPlan, total_rounds: int) -> NumpyState | None:
        """This site's personalized model at the end of ``plan``'s run from the final global ``params``."""
        personalization = self.personalization(plan)
        if personalization is not None:
            return personalization.personalized(params, plan, self.state(plan), total_rounds)
        return make_strategy(plan.strategy, plan.hyperparameters).personal_model(params, self.state(plan), total_rounds)

    def evaluate(self, params: NumpyState) -> float:
        """The dataset's metric of ``params`` on this site's local test set (FLamby: on the concatenation)."""
        load_numpy_state(self.model, params)
        with self.autocast():
            return evaluate(self.module, self.model, self.test_set, self.eval_batch_size, self.device)
