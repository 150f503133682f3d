"""Cyclic (cyclic weight transfer; Chang et al., "Distributed deep learning networks among institutions
for medical imaging", JAMIA 2018): the model travels from site to site, each training it for
``num_updates`` local updates. One round is one pass through all sites, in a permutation drawn from the
round's generator (derived from the run seed and the round), or in site order with ``deterministic_cycle``.

Deviation from FLamby, on purpose: FLamby's shipped Cyclic never passes the model on (each site trains
its own copy; the benchmark evaluates site 0's, reference §2), and counts one site visit as a round.
This is the algorithm as published; the order of each round is in the run history.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from flamby_flare.settings import setting
from flamby_flare.strategies.base import Strategy
from flamby_flare.strategies.in_process import InProcessStrategy


@dataclass(frozen=True)
class CyclicStrategy(Strategy):
    name = "cyclic"
    label = "Cyclic"
    he_refusal = None  # its aggregate is the last site's state: a weighted sum with one term

    deterministic_cycle: bool = setting(
        "bool", False, help="visit the sites in site order (default: a permutation per round)"
    )

    def schedule(self, round_index, sites, rng: np.random.Generator) -> list[list[str]]:
        order = list(sites) if self.deterministic_cycle else [sites[i] for i in rng.permutation(len(sites))]
        return [[site] for site in order]

    def aggregate(self, params, results, state, keys):
        return results[-1].params, state  # the model as the last site left it


class Cyclic(InProcessStrategy):
    """FLamby's ``flamby.strategies.cyclic.Cyclic``, in process (``InProcessStrategy``): ``rng`` (a NumPy
    generator) draws each round's order; None derives it from ``seed``, as the NVFlare run does."""

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
        deterministic_cycle: bool = False,
        rng: np.random.Generator = None,
        log_basename: str = "cyclic",
        logdir: str = "./runs",
    ):
        super().__init__(
            CyclicStrategy(deterministic_cycle=deterministic_cycle),
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
            log_basename + f"-deterministic{deterministic_cycle}",
            seed,
            rng,
        )
