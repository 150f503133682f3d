"""FedRep (Collins, Hassani, Mokhtari and Shakkottai, "Exploiting Shared Representations for Personalized
Federated Learning", ICML 2021, Algorithm 1): the representation (body) is federated, the head (each
baseline's last layer) stays at its site, and the two are trained in turn. Every round a site starts from
the server's body and its own head (FedPer's ``LocalHead``), takes ``head_updates`` steps on the head with
the body fixed, then the rest of the round's updates on the body with the head fixed, and keeps its head
(``fedrep_head``); the server averages the bodies (the whole state, as FedAvg: the head entries it
averages are not used by the sites). Each site's personalized model is the final global body with its
own head.

Deliberate deviation: the paper gives the head and the body budgets of their own (10 local epochs and 1);
here they share FLamby's round budget (``num_updates``), the first ``head_updates`` of it going to the
head, so FedRep costs what every other strategy costs. A part is held fixed by zeroing its gradients after
the backward pass (under DP-SGD: after the noise), so plain SGD (FLamby's, and every NVFlare site's) leaves
it unchanged; an in-process optimizer with momentum would still move it. On a one-layer baseline the
body is empty: only the head trains.
"""

from __future__ import annotations

from dataclasses import dataclass

from flamby_flare.settings import SettingError, setting
from flamby_flare.strategies.base import LocalRound, SiteRule, Strategy
from flamby_flare.strategies.fed_per import LocalHead
from flamby_flare.strategies.in_process import InProcessStrategy

HEAD = "fedrep_head"


class HeadThenBody(LocalHead):
    """FedPer's local head, trained alone for the first ``head_updates`` steps, then held fixed."""

    def __init__(self, head_updates: int):
        super().__init__(HEAD)
        self.head_updates = head_updates

    def begin(self, local: LocalRound) -> None:
        super().begin(local)
        if self.head_updates > local.num_updates:
            raise SettingError(
                f"fedrep: head_updates must be <= the round's updates ({local.num_updates}), got {self.head_updates}"
            )
        self.steps = 0

    def correct(self, named) -> None:
        self.steps += 1
        head_phase = self.steps <= self.head_updates
        for key, p in named.items():
            if (key in self.keys) != head_phase and p.grad is not None:
                p.grad.zero_()


@dataclass(frozen=True)
class FedRepStrategy(Strategy):
    name = "fedrep"
    label = "FedRep"
    personal_state = HEAD

    head_updates: int = setting("int", 10, low=0, help="of each round's updates, how many train the head alone first")

    def site_rule(self, message: dict) -> SiteRule:
        return HeadThenBody(self.head_updates)


class FedRep(InProcessStrategy):
    """FedRep with FLamby's in-process signature (``InProcessStrategy``)."""

    def __init__(
        self,
        training_dataloaders,
        model,
        loss,
        optimizer_class,
        learning_rate: float,
        num_updates: int,
        nrounds: int,
        head_updates: int = 10,
        dp_target_epsilon: float = None,
        dp_target_delta: float = None,
        dp_max_grad_norm: float = None,
        seed=None,
        log: bool = False,
        log_period: int = 100,
        bits_counting_function=None,
        logdir: str = "./runs",
        log_basename: str = "fed_rep",
    ):
        super().__init__(
            FedRepStrategy(head_updates=head_updates),
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
