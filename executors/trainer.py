"""A site's local training and evaluation, in plain PyTorch (no NVFlare), so tests drive it directly."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from executors.batch_loader import auto_workers, load_batches
from executors.batch_stream import BatchStream
from executors.personalization import SitePersonalization
from executors.site_state import SiteState
from flamby_flare.datasets import get_dataset
from flamby_flare.evaluation import evaluate
from flamby_flare.model_state import NumpyState, load_numpy_state, to_numpy_state
from flamby_flare.paths import dataset_dir, run_folder
from flamby_flare.personalization import Personalization
from flamby_flare.protocol import TrainPlan
from flamby_flare.seeding import derive_seed, set_seed
from privacy.accounting import digest
from privacy.dp_sgd import DPSGDConfig, DPSGDRound, check_private_model


SCAFFOLD_C_LOCAL = "scaffold_c_local"  # the site's control c_i, in its run state (per round)
PRECISIONS = ("fp32", "bf16")


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
    scaffold_c_diff: NumpyState | None = None  # SCAFFOLD: c_i+ - c_i, for the trainable parameters
    privacy: list[dict] = field(default_factory=list)  # ledger records of the DP mechanisms applied
    release_loss: bool = True  # False: DP is on and the loss must stay at the site


class SiteTrainer:
    """FLamby center ``center`` of ``dataset``: its train and test sets and its copy of the baseline.

    Training follows FLamby's client: plain SGD (no momentum, no weight decay) with the plan's lr for
    ``num_updates`` batch updates, the batches streaming on across rounds (see ``BatchStream``). All
    randomness of round r comes from ``(seed, center, r)``, and state that must persist (SCAFFOLD's c_i)
    lives in ``state_dir/<plan.run_key>``, one version per round (round r reads what round r - 1 wrote), so
    results depend neither on process lifetime nor on a server restart that repeats a round.

    Strategy hooks, driven by what the server sends: FedProx's ``mu`` adds (mu/2)||w - w_start||^2 to the
    loss; SCAFFOLD's global control ``c_global`` corrects every gradient by c - c_i (see controllers.scaffold).

    ``dp_sgd``: train with sample-level DP-SGD (``privacy.dp_sgd``): Poisson-sampled batches, per-sample
    clipping and noise, the privacy spent booked in the run state and reported with the result.

    ``num_workers``: DataLoader processes loading the batches (None: ``batch_loader.auto_workers``); results
    do not depend on it. ``precision``: ``"fp32"``, or ``"bf16"`` for bfloat16 autocast of the forward passes
    (training and evaluation; the weights, optimizer and exchanged model stay float32). ``dataset_args``:
    extra arguments of the dataset class (e.g. Fed-KITS19's ``patch_size``); ``model_args``: of the baseline
    model's (e.g. Fed-Camelyon16's ``mask_padding``; never its shapes: the server builds the initial model).
    """

    def __init__(
        self,
        dataset: str,
        center: int,
        data_root: str | os.PathLike | None = None,
        device: str = "auto",
        eval_batch_size: int | None = None,
        state_dir: str | os.PathLike | None = None,
        dp_sgd: DPSGDConfig | None = None,
        num_workers: int | None = None,
        precision: str = "fp32",
        dataset_args: dict | None = None,
        model_args: dict | None = None,
    ):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if precision != "fp32" and dp_sgd is not None:
            raise ValueError("dp_sgd runs in fp32 only: Opacus' per-sample gradients do not support autocast")
        self.dataset_name = dataset
        self.module = get_dataset(dataset)
        self.center = center
        folder = dataset_dir(dataset, data_root)
        dataset_args = dataset_args or {}
        self.train_set = self.module.FedClass(center=center, train=True, data_path=folder, **dataset_args)
        self.test_set = self.module.FedClass(center=center, train=False, data_path=folder, **dataset_args)
        self.device = resolve_device(device, center)
        self.precision = precision
        self.num_workers = auto_workers(self.train_set, self.device) if num_workers is None else num_workers
        self.model = self.module.Baseline(**(model_args or {})).to(self.device)
        self.loss_fn = self.module.BaselineLoss()
        self.eval_batch_size = eval_batch_size or self.module.BATCH_SIZE
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self._memory_state = SiteState(None)
        self.dp_sgd = dp_sgd
        self._personalization: SitePersonalization | None = None
        if dp_sgd is not None:
            check_private_model(self.model)

    @property
    def n_train(self) -> int:
        return len(self.train_set)

    @property
    def n_test(self) -> int:
        return len(self.test_set)

    def train(
        self, params: NumpyState, plan: TrainPlan, round_index: int,
        mu: float = 0.0, scaffold_c_global: NumpyState | None = None, total_rounds: int = 0,
    ) -> TrainResult:
        """One round (of ``total_rounds``) of local training from ``params``; returns the new full model state."""
        if plan.dataset != self.dataset_name:
            raise ValueError(f"server plans {plan.dataset!r} but this site serves {self.dataset_name!r}")
        state = self.state(plan)
        personalization = self.personalization(plan)
        received = params  # the server's model (FedBN starts from it with this site's own normalization layers)
        if personalization is not None:
            params = personalization.before_training(received, state, round_index)
        load_numpy_state(self.model, params)
        self.model.train()
        set_seed(derive_seed(plan.seed, self.center, round_index, 1))
        named = dict(self.model.named_parameters())
        anchor = {k: p.detach().clone() for k, p in named.items()} if mu > 0 else None
        controls = self._scaffold_controls(state, scaffold_c_global, round_index) if scaffold_c_global is not None else None
        correction = None
        if controls is not None:  # SCAFFOLD: every gradient gets c - c_i
            c, c_i = controls
            correction = {k: torch.as_tensor(c[k] - c_i[k], dtype=torch.float32, device=self.device) for k in c}
        optimizer = torch.optim.SGD(self.model.parameters(), lr=plan.learning_rate)
        start = time.perf_counter()
        if self.dp_sgd is not None:
            dp = DPSGDRound(
                self.dp_sgd, self.model, optimizer, n_samples=self.n_train, batch_size=plan.batch_size,
                num_updates=plan.num_updates, total_rounds=total_rounds, round_index=round_index,
                seed=derive_seed(plan.seed, self.center, round_index, 3), state=state,
                input_digest=digest(received),
            )
            total, count = self._train_private(dp, named, anchor, mu, correction)
            privacy = [dp.finish()]
        else:
            stream = BatchStream(self.n_train, plan.batch_size, derive_seed(plan.seed, self.center))
            batches = stream.seeded(start=round_index * plan.num_updates, count=plan.num_updates)
            total, count = self.sgd_updates(self.model, optimizer, batches, anchor, mu, correction)
            privacy = []
        seconds = time.perf_counter() - start
        new_params = to_numpy_state(self.model)
        c_diff = None
        if controls is not None:
            c_diff = self._scaffold_update(state, params, new_params, controls, plan, round_index)
        if personalization is not None:
            personalization.after_training(received, new_params, plan, state, round_index)
        mean_loss = float(total) / max(count, 1)
        release = self.dp_sgd is None or self.dp_sgd.release_train_loss
        return TrainResult(new_params, self.n_train, mean_loss, plan.num_updates, seconds, c_diff, privacy, release)

    def sgd_updates(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches, anchor: dict | None = None,
                    mu: float = 0.0, correction: dict | None = None) -> tuple[torch.Tensor, int]:
        """FLamby's local loop over ``batches`` (``(indices, seed)`` of the train set), with FedProx's
        (mu/2)||w - anchor||^2 (or Ditto's) and SCAFFOLD's gradient ``correction``; returns (summed loss, updates)."""
        named = dict(model.named_parameters())
        total, count = torch.zeros((), device=self.device), 0
        for X, y in self.load(batches):
            with self.autocast():
                loss = self.loss_fn(model(X), y)
            objective = loss
            if anchor is not None:
                objective = loss + mu / 2 * sum(((p - anchor[k]) ** 2).sum() for k, p in named.items())
            optimizer.zero_grad()
            objective.backward()
            if correction is not None:
                for k, p in named.items():
                    p.grad += correction[k]
            optimizer.step()
            total += loss.detach()
            count += 1
        return total, count

    def _train_private(self, dp: DPSGDRound, named, anchor, mu, correction) -> tuple[torch.Tensor, int]:
        """DP-SGD: Poisson batches, privatized gradients; FedProx's and SCAFFOLD's data-independent terms
        are added after the noise. Returns (summed loss, non-empty batches)."""

        def add_grad() -> None:
            for k, p in named.items():
                if anchor is not None:
                    p.grad += mu * (p.detach() - anchor[k])
                if correction is not None:
                    p.grad += correction[k]

        total, count = torch.zeros((), device=self.device), 0
        batches = ((indices, derive_seed(dp.augmentation_seed, step)) for step, indices in enumerate(dp.batches()))
        for X, y in self.load(batches):
            loss = self.loss_fn(self.model(X), y)
            dp.backward(loss)
            dp.step(add_grad if anchor is not None or correction is not None else None)
            if len(y):  # an empty Poisson batch is a noise-only step, with no loss
                total += loss.detach()
                count += 1
        return total, count

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

    def _scaffold_controls(
        self, state: SiteState, c_global: NumpyState, round_index: int
    ) -> tuple[NumpyState, NumpyState]:
        """(c, c_i) as float64 arrays for every trainable parameter; c_i restarts at 0 in round 0."""
        shapes = {k: tuple(p.shape) for k, p in self.model.named_parameters()}
        stored = state.load_round(SCAFFOLD_C_LOCAL, round_index - 1)
        c = {k: np.zeros(s) + np.asarray(c_global.get(k, 0.0), np.float64) for k, s in shapes.items()}
        c_i = {k: np.zeros(s) + (stored[k] if stored is not None else 0.0) for k, s in shapes.items()}
        return c, c_i

    def _scaffold_update(
        self, state: SiteState, x: NumpyState, y: NumpyState, controls: tuple[NumpyState, NumpyState],
        plan: TrainPlan, round_index: int,
    ) -> NumpyState:
        """Option II: c_i+ = c_i - c + (x - y) / (K lr); saves c_i+ (as round ``round_index``'s) and
        returns c_i+ - c_i."""
        c, c_i = controls
        scale = 1.0 / (plan.num_updates * plan.learning_rate)
        c_new = {k: c_i[k] - c[k] + (x[k].astype(np.float64) - y[k].astype(np.float64)) * scale for k in c}
        state.save_round(SCAFFOLD_C_LOCAL, round_index, {k: v.astype(x[k].dtype) for k, v in c_new.items()})
        return {k: (c_new[k] - c_i[k]).astype(x[k].dtype) for k in c}

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
        if personalization is None:
            return None
        return personalization.personalized(params, plan, self.state(plan), total_rounds)

    def evaluate(self, params: NumpyState) -> float:
        """The dataset's metric of ``params`` on this site's local test set (FLamby: on the concatenation)."""
        load_numpy_state(self.model, params)
        with self.autocast():
            return evaluate(self.module, self.model, self.test_set, self.eval_batch_size, self.device)
