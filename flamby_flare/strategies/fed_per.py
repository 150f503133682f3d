"""FedPer (Arivazhagan, Aggarwal, Singh and Choudhary, "Federated Learning with Personalization Layers",
2019): the body is federated, the head (each baseline's last layer, ``personalization.head_keys``) stays
at its site. Every round a site starts from the server's body and its own head (the server's at round 1),
trains the whole model as FedAvg does and keeps its new head in its run state (``fedper_head``, one
version per round); the server averages the whole state as FedAvg does, so the global model's head is
the sites' mean head. Each site's personalized model is the final global body with its own head.

On a one-layer baseline (Fed-Heart-Disease, Fed-TCGA-BRCA, Fed-Synthetic) the head is the whole model:
FedPer is then each site training its own model, and the global model is their mean.
"""

from __future__ import annotations

from dataclasses import dataclass

from flamby_flare.errors import SiteStateError
from flamby_flare.strategies.base import LocalRound, SiteRule, Strategy
from flamby_flare.strategies.in_process import InProcessStrategy

HEAD = "fedper_head"


class LocalHead(SiteRule):
    """The site's own head over the server's model at ``begin``, saved under ``name`` at ``finish``."""

    def __init__(self, name: str = HEAD):
        self.name = name

    def begin(self, local: LocalRound) -> None:
        import numpy as np
        import torch

        from flamby_flare.personalization import head_keys

        self.keys = head_keys(local.model)
        head = local.state.load_round(self.name, local.round_index - 1)
        if head is not None:  # only the head's entries: the rest stays the server's, as loaded
            if set(head) != set(self.keys):
                raise SiteStateError(
                    f"{self.name}: this site's saved head has entries {sorted(head)}, its model's head {self.keys}"
                )
            local.model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in head.items()}, strict=False)

    def finish(self, local: LocalRound, new_params) -> dict:
        local.state.save_round(self.name, local.round_index, {k: new_params[k] for k in self.keys})
        return {}


@dataclass(frozen=True)
class FedPerStrategy(Strategy):
    name = "fedper"
    label = "FedPer"
    personal_state = HEAD

    def site_rule(self, message: dict) -> SiteRule:
        return LocalHead()


class FedPer(InProcessStrategy):
    """FedPer with FLamby's in-process signature (``InProcessStrategy``)."""

    def __init__(
        self,
        training_dataloaders,
        model,
        loss,
        optimizer_class,
        learning_rate: float,
        num_updates: int,
        nrounds: int,
        dp_target_epsilon: float = None,
        dp_target_delta: float = None,
        dp_max_grad_norm: float = None,
        seed=None,
        log: bool = False,
        log_period: int = 100,
        bits_counting_function=None,
        logdir: str = "./runs",
        log_basename: str = "fed_per",
    ):
        super().__init__(
            FedPerStrategy(),
            training_dataloaders,
            model,
            loss,
            optimizer_class,
            learning_rate,
            num_updates,
            nrounds,
            dp_target_epsilon,
            dp_target_delta,
            dp_max_grad_norm,
            log,
            log_period,
            bits_counting_function,
            logdir,
            log_basename,
            seed,
        )
