"""FedAvg, then fine-tuning (FLamby's ``FedAvgFineTuning``): after the federated rounds every client takes
``num_fine_tuning_steps`` more local updates from the final global model on its own data, and ``run()``
returns these personalized models. In NVFlare jobs the same method is the controller's
``personalization={"method": "finetune"}`` (``flamby_flare.personalization``)."""

from __future__ import annotations

from flamby_flare.local_training import SGDStep, local_steps
from flamby_flare.strategies.base import SiteRule
from flamby_flare.strategies.fed_avg import FedAvgStrategy
from flamby_flare.strategies.in_process import InProcessStrategy


class FedAvgFineTuning(InProcessStrategy):
    """FLamby's ``flamby.strategies.fed_avg_fine_tuning.FedAvgFineTuning``, in process. (FLamby passes its
    ``log`` arguments into the DP slots by position, so its logging is off; here they do what they say.)"""

    def __init__(
        self,
        training_dataloaders,
        model,
        loss,
        optimizer_class,
        learning_rate: float,
        num_updates: int,
        nrounds: int,
        num_fine_tuning_steps: int,
        log: bool = False,
        log_period: int = 100,
        bits_counting_function=None,
        logdir: str = "./runs",
        log_basename: str = "fed_avg_ft",
    ):
        if (
            isinstance(num_fine_tuning_steps, bool)
            or not isinstance(num_fine_tuning_steps, int)
            or num_fine_tuning_steps < 0
        ):
            raise ValueError(
                f"FedAvgFineTuning: num_fine_tuning_steps must be an integer >= 0, got {num_fine_tuning_steps!r}"
            )
        super().__init__(
            FedAvgStrategy(),
            training_dataloaders,
            model,
            loss,
            optimizer_class,
            learning_rate,
            num_updates,
            nrounds,
            log=log,
            log_period=log_period,
            bits_counting_function=bits_counting_function,
            logdir=logdir,
            log_basename=log_basename,
        )
        self.num_fine_tuning_steps = num_fine_tuning_steps

    def run(self):
        """FedAvg's rounds, then each client's fine-tuning; returns the personalized models."""
        super().run()
        for client in self.models_list:
            client.model.train()
            local_steps(
                client.model,
                client.batches(self.num_fine_tuning_steps),
                client.loss,
                SiteRule(),
                SGDStep(client.optimizer),
                on_loss=self._logger(client),
            )
        return [c.model for c in self.models_list]
