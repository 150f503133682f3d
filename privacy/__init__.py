"""Differential privacy for flamby-flare jobs, with a ledger of the (epsilon, delta) each site spent.

- Sample-level DP-SGD at each site (``dp_sgd``): the executor's ``dp_sgd`` argument.
- Client-level DP (``client_dp``): ``privacy.ClientLevelDP``, a task-result filter of the sites.

Both account with Opacus (``accounting``); every result carries the ledger (see docs/privacy.md).
"""

from privacy.accounting import GaussianBudget, PrivacyBudgetExceeded, epsilon_of
from privacy.client_dp import ClientDPConfig, ClientLevelDP, clip_and_noise
from privacy.dp_sgd import DPSGDConfig, DPSGDRound, check_private_model

__all__ = [
    "ClientDPConfig",
    "ClientLevelDP",
    "DPSGDConfig",
    "DPSGDRound",
    "GaussianBudget",
    "PrivacyBudgetExceeded",
    "check_private_model",
    "clip_and_noise",
    "epsilon_of",
]
