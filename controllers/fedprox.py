"""FedProx (Li et al., "Federated Optimization in Heterogeneous Networks", MLSys 2020).

FedAvg's aggregation; each site minimizes f_i(w) + (mu/2) ||w - w_round_start||^2 over its local updates
(the term is added only when mu > 0, as in FLamby). The server sends mu with every train task, under
NVFlare's ``fedprox_mu`` meta key; the site executor applies it.
"""

from __future__ import annotations

from nvflare.app_common.app_constant import AlgorithmConstants

from controllers.fedavg import FedAvg


class FedProx(FedAvg):
    strategy_name = "FedProx"

    def __init__(self, dataset: str, mu: float, **kwargs):
        super().__init__(dataset, **kwargs)
        if mu < 0:
            raise ValueError(f"FedProx mu must be >= 0, got {mu}")
        self.mu = mu

    def train_meta(self) -> dict:
        return {AlgorithmConstants.FEDPROX_MU: float(self.mu)}

    def hyperparameters(self) -> dict:
        return {**super().hyperparameters(), "mu": self.mu}
