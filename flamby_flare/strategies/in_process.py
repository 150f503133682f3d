"""FLamby's in-process API: the strategy classes a FLamby user constructs with DataLoaders and ``run()``.

``InProcessStrategy`` runs a ``Strategy``'s server and site rules in one process, as FLamby's classes do:

- each client holds its own copy of the model, its loss and its optimizer (``optimizer_class(params, lr)``,
  kept across rounds: an Adam client keeps its moments), and iterates its DataLoader as FLamby's
  ``DataLoaderWithMemory`` does: a finished loader restarts, so epochs do not align with rounds;
- every round, the strategy's schedule, the clients' local updates through the one local loop
  (``flamby_flare.local_training``) with the strategy's site rule, then its server rule;
- ``run()`` returns the clients' models (all holding the final global model; ``[0]`` is what FLamby's
  benchmark evaluates).

Randomness follows FLamby: the DataLoaders draw from torch's global generator (seed it before ``run()``);
nothing here reseeds it. Given the same batches, a model without random layers ends bit-identical to the
NVFlare run of the same strategy (``tests/test_two_runners.py``). DP: with all three ``dp_*`` arguments,
each client trains with this project's DP-SGD (``privacy.dp_sgd``: Poisson sampling of the client's
dataset at rate batch_size / n, noise set for exactly nrounds x num_updates steps, Opacus' RDP accounting;
``privacy_spent()`` gives each client's epsilon). ``log=True`` writes TensorBoard scalars as FLamby does
(``client{i}/train/Loss`` every ``log_period`` updates, under ``logdir/<log_basename>-<date>``).

Deviations from FLamby, on purpose: the whole state dict is averaged (FLamby: parameters only; see
``aggregation``); the aggregate is computed in float64 from the sites' states (FLamby: float32 updates),
so weights can differ in the last bit; ``seed=None`` means 42 (FLamby: the clock).
"""

from __future__ import annotations

import copy
import datetime
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from flamby_flare.divergence import TrainingDiverged, divergence, round_loss, weights_norm
from flamby_flare.local_training import SGDStep, dataset_loss, local_steps, mean_loss
from flamby_flare.model_state import NumpyState, load_numpy_state, to_numpy_state
from flamby_flare.seeding import derive_seed, resolve_seed
from flamby_flare.settings import SettingError
from flamby_flare.sites import center_of, site_name
from flamby_flare.strategies.base import LocalRound, SiteResult, SiteRule, Strategy, play_round

if TYPE_CHECKING:
    import torch


class DataLoaderWithMemory:
    """Iterates a DataLoader forever, batch by batch: a finished loader restarts (FLamby's semantics)."""

    def __init__(self, dataloader):
        self._dataloader = dataloader
        self._iterator = iter(dataloader)

    def __len__(self) -> int:
        return len(self._dataloader.dataset)

    def get_samples(self):
        try:
            return next(self._iterator)
        except StopIteration:
            self._iterator = iter(self._dataloader)
            return next(self._iterator)


def default_device() -> "torch.device":
    """FLamby's choice: the first GPU when there is one, else the CPU."""
    import torch

    return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")


class _Client:
    """One client in process: its loader, model copy, loss, optimizer (kept across rounds) and run state."""

    def __init__(self, index: int, loader, model, loss, optimizer_class, learning_rate: float):
        from executors.site_state import SiteState

        self.index, self.site = index, site_name(index)
        self.device = default_device()
        self.loader = loader
        self.data = DataLoaderWithMemory(loader)
        self.model = copy.deepcopy(model).to(self.device)
        self.loss = copy.deepcopy(loss)
        self.optimizer = optimizer_class(self.model.parameters(), learning_rate)
        self.state = SiteState(None)
        self.num_batches_seen = 0

    def _get_current_params(self) -> list[np.ndarray]:
        """FLamby's ``_Model._get_current_params``: the parameters as NumPy arrays."""
        return [p.detach().cpu().clone().numpy() for p in self.model.parameters()]

    def batches(self, count: int):
        for _ in range(count):
            X, y = self.data.get_samples()
            yield X.to(self.device), y.to(self.device)

    def dp_batches(self, dp):
        """DP-SGD's Poisson batches of this client's dataset, collated by its loader."""
        dataset, collate = self.loader.dataset, self.loader.collate_fn
        for indices in dp.batches():
            if len(indices):
                X, y = collate([dataset[int(i)] for i in indices])
            else:  # an empty Poisson batch: the shapes of one item, no rows
                X, y = collate([dataset[0]])
                X, y = X[:0], y[:0]
            yield X.to(self.device), y.to(self.device)


class InProcessStrategy:
    """FLamby's strategy API over ``strategy`` (see the module docstring); the FLamby classes
    (``flamby_flare.strategies.FedAvg`` ...) are this with their own signatures."""

    def __init__(
        self,
        strategy: Strategy,
        training_dataloaders: Sequence,
        model: "torch.nn.Module",
        loss,
        optimizer_class: Callable,
        learning_rate: float,
        num_updates: int,
        nrounds: int,
        dp_target_epsilon: float | None = None,
        dp_target_delta: float | None = None,
        dp_max_grad_norm: float | None = None,
        log: bool = False,
        log_period: int = 100,
        bits_counting_function: Callable | None = None,
        logdir: str = "./runs",
        log_basename: str = "fed_avg",
        seed: int | None = None,
        rng: np.random.Generator | None = None,
    ):
        import torch

        what = type(self).__name__
        if not isinstance(training_dataloaders, (list, tuple)) or not training_dataloaders:
            raise SettingError(f"{what}: training_dataloaders must be a non-empty list of DataLoaders")
        for i, loader in enumerate(training_dataloaders):
            if not hasattr(loader, "dataset") or len(loader.dataset) == 0:
                raise SettingError(
                    f"{what}: training_dataloaders[{i}] has no samples (a DataLoader over a non-empty dataset is needed)"
                )
        if not isinstance(model, torch.nn.Module):
            raise SettingError(f"{what}: model must be a torch.nn.Module, got {type(model).__name__}")
        if not any(p.requires_grad for p in model.parameters()):
            raise SettingError(f"{what}: model has no trainable parameters")
        if not callable(optimizer_class) or isinstance(optimizer_class, str):
            raise SettingError(
                f"{what}: optimizer_class must be an optimizer class (e.g. torch.optim.SGD), got {optimizer_class!r}"
            )
        for name, value, low in (
            ("learning_rate", learning_rate, 0.0),
            ("num_updates", num_updates, 1),
            ("nrounds", nrounds, 1),
            ("log_period", log_period, 1),
        ):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or value < low
                or (name == "learning_rate" and value <= 0)
            ):
                raise SettingError(
                    f"{what}: {name} must be {'> 0' if name == 'learning_rate' else f'>= {low}'}, got {value!r}"
                )
        for name in ("num_updates", "nrounds", "log_period"):
            if not isinstance(locals()[name], int):
                raise SettingError(f"{what}: {name} must be an integer, got {locals()[name]!r}")
        self.strategy = strategy
        self.num_updates, self.nrounds, self.learning_rate = num_updates, nrounds, float(learning_rate)
        self.seed = resolve_seed(seed)
        self.rng = rng
        self.bits_counting_function = bits_counting_function
        self.models_list = [
            _Client(i, dl, model, loss, optimizer_class, learning_rate) for i, dl in enumerate(training_dataloaders)
        ]
        self.training_sizes = [len(c.data) for c in self.models_list]
        self.total_number_of_samples = sum(self.training_sizes)
        self.num_clients = len(self.models_list)
        self.sites = [c.site for c in self.models_list]
        self.params: NumpyState = to_numpy_state(self.models_list[0].model)
        self.keys = [name for name, _ in self.models_list[0].model.named_parameters()]
        self.strategy_state = strategy.initial_state(self.params, self.keys)
        self.initial_norm = weights_norm(self.params, self.keys)
        self.rounds_done = 0
        self.history: list[dict] = []
        self.dp = None
        dp_args = (dp_target_epsilon, dp_target_delta, dp_max_grad_norm)
        if all(a is not None for a in dp_args):
            from privacy.dp_sgd import DPSGDConfig, check_private_model

            if strategy.dp_sgd_refusal:
                raise SettingError(f"{what}: DP-SGD cannot serve it: {strategy.dp_sgd_refusal}")
            self.dp = DPSGDConfig(
                max_grad_norm=dp_max_grad_norm, delta=dp_target_delta, target_epsilon=dp_target_epsilon
            )
            check_private_model(self.models_list[0].model)
        elif any(a is not None for a in dp_args):
            raise SettingError(f"{what}: DP needs all of dp_target_epsilon, dp_target_delta and dp_max_grad_norm")
        self.writer = None
        if log:
            from torch.utils.tensorboard import SummaryWriter

            os.makedirs(logdir, exist_ok=True)
            self.writer = SummaryWriter(log_dir=os.path.join(logdir, f"{log_basename}-{datetime.datetime.now()}"))
        self.log_period = log_period

    # ---- one client's round ---------------------------------------------------------------------
    def _train_client(
        self, client: _Client, params: NumpyState, rule: SiteRule, round_index: int, num_updates: int | None = None
    ) -> SiteResult:
        num_updates = num_updates or self.num_updates
        load_numpy_state(client.model, params)
        client.model.train()
        local = LocalRound(
            params,
            client.model,
            client.state,
            round_index,
            self.learning_rate,
            num_updates,
            data_loss=lambda: self._data_loss(client),
        )
        rule.begin(local)
        start = time.perf_counter()
        if self.dp is None:
            step, batches = SGDStep(client.optimizer), client.batches(num_updates)
        else:
            from privacy.accounting import digest
            from privacy.dp_sgd import DPSGDRound

            step = DPSGDRound(
                self.dp,
                client.model,
                client.optimizer,
                n_samples=len(client.data),
                batch_size=client.loader.batch_size or 1,
                num_updates=num_updates,
                total_rounds=self.nrounds,
                round_index=round_index,
                seed=derive_seed(self.seed, client.index, round_index, 3),
                state=client.state,
                input_digest=digest(params),
            )
            batches = client.dp_batches(step)
        total, count = local_steps(client.model, batches, client.loss, rule, step, on_loss=self._logger(client))
        privacy = [step.finish()] if self.dp is not None else []
        seconds = time.perf_counter() - start
        new = to_numpy_state(client.model)
        report = rule.finish(local, new)
        if self.bits_counting_function is not None:
            self.bits_counting_function([new[k] - params[k] for k in self.keys])
        from flamby_flare.protocol import META_PRIVACY

        return SiteResult(
            client.site,
            new,
            len(client.data),
            mean_loss(total, count),
            seconds,
            {META_PRIVACY: privacy} if privacy else {},
            report,
        )

    def _data_loss(self, client: _Client) -> float:
        """The client's model's loss over its whole dataset in the order of its items, in its loader's batch
        size (or its batch sampler's), as an NVFlare site computes it (``executors.trainer.SiteTrainer.data_loss``)."""
        from torch.utils.data import DataLoader

        if self.dp is not None:
            raise SettingError(
                f"{type(self).__name__} needs each client's loss on its data, which DP-SGD does not release"
            )
        size = client.loader.batch_size or getattr(client.loader.batch_sampler, "batch_size", None) or 1
        loader = DataLoader(client.loader.dataset, batch_size=size, collate_fn=client.loader.collate_fn)
        return dataset_loss(client.model, ((X.to(client.device), y.to(client.device)) for X, y in loader), client.loss)

    def _logger(self, client: _Client):
        def log(loss) -> None:
            client.num_batches_seen += 1
            if self.writer is not None and (client.num_batches_seen - 1) % self.log_period == 0:
                self.writer.add_scalar(
                    f"client{client.index}/train/Loss", float(loss.detach()), client.num_batches_seen
                )

        return log

    def _train_group(self, group: list[str], params: NumpyState, message: dict, round_index: int) -> list[SiteResult]:
        return [
            self._train_client(self.models_list[center_of(s)], params, self.strategy.site_rule(message), round_index)
            for s in group
        ]

    # ---- FLamby's API ----------------------------------------------------------------------------
    def perform_round(self) -> None:
        """One round: the strategy's schedule, local updates, aggregation; every client gets the new model."""
        r = self.rounds_done
        rng = self.rng if self.rng is not None else np.random.default_rng(derive_seed(self.seed, r, 2))
        start = self.params
        params, state, results, groups = play_round(
            self.strategy, self.params, self.strategy_state, r, self.sites, rng, self.keys, self._train_group
        )
        reason = divergence(round_loss(results), params, self.keys, self.initial_norm)
        if reason is not None:  # as the NVFlare run does: stop, keep the round before's model, say why
            for client in self.models_list:
                load_numpy_state(client.model, self.params)
            raise TrainingDiverged(r + 1, reason)
        self.params, self.strategy_state = params, state
        self._after_round(start, results)
        for client in self.models_list:
            load_numpy_state(client.model, self.params)
        losses = {res.site: res.loss for res in results}
        self.history.append({"round": r + 1, "per_site": losses, "order": [s for g in groups for s in g]})
        if self.writer is not None:
            for res in results:
                self.writer.add_scalar(f"client{center_of(res.site)}/round/Loss", res.loss, r + 1)
        self.rounds_done += 1

    def _after_round(self, start: NumpyState, results: list[SiteResult]) -> None:
        """What a FLamby class keeps of a round besides the model (SCAFFOLD: FLamby's previous states)."""

    def run(self) -> list["torch.nn.Module"]:
        """``nrounds`` rounds; returns the clients' models (each holding the final global model). A round that
        diverges (``flamby_flare.divergence``) raises ``TrainingDiverged``, the models holding the round before's."""
        for _ in range(self.nrounds - self.rounds_done):
            self.perform_round()
        if self.writer is not None:
            self.writer.flush()
        return [c.model for c in self.models_list]

    def personal_models(self) -> list[NumpyState | None]:
        """Each client's personalized model so far, as a personalized strategy (MR-MTL, FedPer, FedRep, APFL)
        defines it (``Strategy.personal_model``); None for the others."""
        return [self.strategy.personal_model(self.params, c.state, self.rounds_done) for c in self.models_list]

    def privacy_spent(self) -> list[float | None]:
        """Each client's epsilon spent so far under DP (None without DP)."""
        from privacy.accounting import RoundLedger

        if self.dp is None:
            return [None] * self.num_clients
        return [RoundLedger(c.state, "dp_sgd", self.dp).epsilon(self.rounds_done - 1) for c in self.models_list]

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return {"learning_rate": self.learning_rate, **self.strategy.hyperparameters()}
