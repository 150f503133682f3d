"""MR-MTL, mean-regularized multi-task learning (Liu, Hu, Wu and Smith, "On Privacy and Personalization in
Cross-Silo Federated Learning", NeurIPS 2022), full participation: each site keeps a personal model v_k and
trains it, every round, on f_k(v_k) + (lambda/2) ||v_k - v_bar||^2 toward the round's mean model v_bar;
the server's v_bar is the sites' personal models averaged uniformly (as in the paper).

v_k starts as the initial global model and lives in the site's run state (``mrmtl_personal``, one version
per round: it survives process swaps and resumes). The final v_bar is the run's global model; each site's
last v_k is its personalized model, evaluated beside it (``Strategy.personal_state``). Under DP-SGD the
regularizer's gradient is added after clipping and noise (it does not depend on data).
"""

from __future__ import annotations

from dataclasses import dataclass

from flamby_flare.settings import setting
from flamby_flare.strategies.aggregation import weighted_average
from flamby_flare.strategies.base import LocalRound, SiteResult, SiteRule, Strategy
from flamby_flare.strategies.fed_prox import ProximalTerm
from flamby_flare.strategies.in_process import InProcessStrategy

PERSONAL = "mrmtl_personal"  # the site's v_k, in its run state (per round)


class MeanRegularized(ProximalTerm):
    """The site's own v_k trained with (lambda/2)||v_k - v_bar||^2, v_bar the model the server sent."""

    def begin(self, local: LocalRound) -> None:
        from flamby_flare.model_state import load_numpy_state

        self.anchor = {k: p.detach().clone() for k, p in local.model.named_parameters()}  # v_bar, as loaded
        personal = local.state.load_round(PERSONAL, local.round_index - 1)
        if personal is not None:  # round 1: v_k is the initial model, which the server sent
            load_numpy_state(local.model, personal)

    def finish(self, local: LocalRound, new_params) -> dict:
        local.state.save_round(PERSONAL, local.round_index, new_params)
        return {}


@dataclass(frozen=True)
class MRMTLStrategy(Strategy):
    name = "mrmtl"
    label = "MRMTL"
    personal_state = PERSONAL
    he_refusal = None  # its aggregate is the sites' unweighted mean

    lam: float = setting("float", 0.1, low=0.0, help="lambda, the pull of each personal model toward the mean")

    def site_rule(self, message: dict) -> SiteRule:
        return MeanRegularized(self.lam)

    def aggregate(self, params, results: list[SiteResult], state, keys):
        return weighted_average([r.params for r in results], [1] * len(results)), state


class MRMTL(InProcessStrategy):
    """MR-MTL with FLamby's in-process signature (``InProcessStrategy``); ``personal_models()`` gives each
    client's v_k."""

    def __init__(
        self,
        training_dataloaders,
        model,
        loss,
        optimizer_class,
        learning_rate: float,
        num_updates: int,
        nrounds: int,
        lam: float = 0.1,
        dp_target_epsilon: float = None,
        dp_target_delta: float = None,
        dp_max_grad_norm: float = None,
        seed=None,
        log: bool = False,
        log_period: int = 100,
        bits_counting_function=None,
        logdir: str = "./runs",
        log_basename: str = "mr_mtl",
    ):
        super().__init__(
            MRMTLStrategy(lam=lam),
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
