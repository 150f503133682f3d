"""A site's side of personalization (settings: ``flamby_flare.personalization``): what it trains besides the
global model, what it keeps in its run state, and the personalized model it evaluates at the end.

State (``SiteState`` under the run key, one version per round like SCAFFOLD's control, so it survives
process swaps and a repeated round): Ditto's personal model ``ditto_personal_r{r}``, FedBN's local
normalization entries ``fedbn_local_r{r}``. Fine-tuning keeps nothing between rounds.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch

from executors.batch_stream import BatchStream
from executors.site_state import SiteState
from flamby_flare.errors import SiteStateError
from flamby_flare.local_training import SGD, SGDStep, local_steps
from flamby_flare.model_state import NumpyState, load_numpy_state, to_numpy_state
from flamby_flare.personalization import Personalization, normalization_keys
from flamby_flare.protocol import TrainPlan
from flamby_flare.seeding import derive_seed
from flamby_flare.settings import SettingError
from flamby_flare.strategies.fed_prox import ProximalTerm

if TYPE_CHECKING:
    from executors.trainer import SiteTrainer

DITTO = "ditto_personal"
FEDBN = "fedbn_local"


def _optimizer(config: Personalization, model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr)
    return SGD(model.parameters(), lr=lr)


class SitePersonalization:
    """``config`` applied by ``trainer`` (its data, loss and device)."""

    def __init__(self, trainer: "SiteTrainer", config: Personalization):
        self.trainer, self.config = trainer, config
        if config.method == "fedbn":
            self.local_keys = normalization_keys(trainer.model)
            if not self.local_keys:
                raise SettingError(
                    f"fedbn: {trainer.dataset_name}'s model has no normalization layer, so FedBN would be FedAvg"
                )

    # ---- during training -------------------------------------------------------------------------
    def before_training(self, params: NumpyState, state: SiteState, round_index: int) -> NumpyState:
        """FedBN: the round starts from the server's model with this site's own normalization entries."""
        if self.config.method != "fedbn" or round_index == 0:
            return params
        local = state.load_round(FEDBN, round_index - 1)
        if local is None:
            raise SiteStateError(
                f"fedbn: this site's normalization layers of round {round_index} are missing from its state"
            )
        return {**params, **local}

    def after_training(
        self, global_params: NumpyState, new_params: NumpyState, plan: TrainPlan, state: SiteState, round_index: int
    ) -> None:
        """FedBN: keep this round's normalization entries. Ditto: the personal model's round."""
        if self.config.method == "fedbn":
            state.save_round(FEDBN, round_index, {k: new_params[k] for k in self.local_keys})
        elif self.config.method == "ditto":
            previous = state.load_round(DITTO, round_index - 1)
            personal = self.ditto_update(
                previous if previous is not None else global_params, global_params, plan, round_index
            )
            state.save_round(DITTO, round_index, personal)

    def ditto_update(
        self, personal: NumpyState, global_params: NumpyState, plan: TrainPlan, round_index: int
    ) -> NumpyState:
        """K SGD steps on f_k(v) + (lambda/2)||v - w_t||^2 from v = ``personal`` (Ditto, Algorithm 1), on a
        batch stream of their own, so the global training is FedAvg's exactly."""
        k = self.config.num_updates or plan.num_updates
        stream = BatchStream(self.trainer.n_train, plan.batch_size, derive_seed(plan.seed, self.trainer.center, 5))
        return self._train(
            personal,
            stream.seeded(start=round_index * k, count=k, seeds=self.trainer.batch_seeds),
            self.config.learning_rate or plan.learning_rate,
            anchor=global_params,
            mu=self.config.ditto_lambda,
        )

    # ---- at the end ------------------------------------------------------------------------------
    def personalized(
        self, global_params: NumpyState, plan: TrainPlan, state: SiteState, total_rounds: int
    ) -> NumpyState:
        """The site's personalized model after ``total_rounds`` rounds of training toward ``global_params``."""
        last = total_rounds - 1
        if self.config.method == "finetune":
            return self.fine_tune(global_params, plan, total_rounds)
        stored = state.load_round(DITTO if self.config.method == "ditto" else FEDBN, last)
        if stored is None:
            raise SiteStateError(f"{self.config.method}: this site's state of round {total_rounds} is missing")
        return stored if self.config.method == "ditto" else {**global_params, **stored}

    def fine_tune(self, global_params: NumpyState, plan: TrainPlan, total_rounds: int) -> NumpyState:
        """FLamby's ``FedAvgFineTuning``: N more local updates from the global model, the site's batch stream
        continuing where federated training stopped."""
        n = self.config.num_updates or 100
        stream = BatchStream(self.trainer.n_train, plan.batch_size, derive_seed(plan.seed, self.trainer.center))
        batches = stream.seeded(start=total_rounds * plan.num_updates, count=n, seeds=self.trainer.batch_seeds)
        return self._train(global_params, batches, self.config.learning_rate or plan.learning_rate)

    def _train(
        self, start: NumpyState, batches, lr: float, anchor: NumpyState | None = None, mu: float = 0.0
    ) -> NumpyState:
        model = copy.deepcopy(self.trainer.model)  # the trainer's own model stays as it is
        load_numpy_state(model, start)
        model.train()
        anchors = None
        if anchor is not None and mu > 0:
            reference = copy.deepcopy(model)
            load_numpy_state(reference, anchor)
            anchors = {k: p.detach() for k, p in reference.named_parameters()}
        step = SGDStep(_optimizer(self.config, model, lr))
        local_steps(
            model,
            self.trainer.load(batches),
            self.trainer.loss_fn,
            ProximalTerm(mu, anchors),
            step,
            self.trainer.autocast,
        )
        return to_numpy_state(model)
