"""FedAvg (McMahan et al., "Communication-Efficient Learning of Deep Networks from Decentralized Data",
AISTATS 2017), as FLamby runs it: full participation, every site does ``num_updates`` local updates from
the global model, and x <- sum_i (n_i / N) y_i with n_i the size of site i's train set."""

from __future__ import annotations

from dataclasses import dataclass

from flamby_flare.strategies.base import Strategy
from flamby_flare.strategies.in_process import InProcessStrategy


@dataclass(frozen=True)
class FedAvgStrategy(Strategy):
    """The server averages the sites' states; the sites train as they are (the base rules)."""

    name = "fedavg"
    label = "FedAvg"


class FedAvg(InProcessStrategy):
    """FLamby's ``flamby.strategies.fed_avg.FedAvg``, in process (``InProcessStrategy``)."""

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
        log: bool = False,
        log_period: int = 100,
        bits_counting_function=None,
        logdir: str = "./runs",
        log_basename: str = "fed_avg",
        seed=None,
    ):
        super().__init__(
            FedAvgStrategy(),
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
