"""Fed-TCGA-BRCA baseline: a linear Cox model (log-risk score) and FLamby's Cox partial-likelihood loss."""

import torch
from torch import nn


class Baseline(nn.Module):
    def __init__(self, input_dim: int = 39, output_dim: int = 1):
        super().__init__()
        self.fc = nn.Linear(input_dim, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class BaselineLoss(nn.Module):
    """Negative Cox partial log-likelihood of a batch (Breslow, no tie correction), as FLamby computes it.

    Rows are stably sorted by time, longest first, so row i's risk set is rows 0..i; the loss is
    ``mean_i E_i * (logsumexp(s_0..s_i) - s_i)`` over all n rows, censored rows included in the mean.
    ``truth`` is ``(n, 2)`` with columns (E, T); ``scores`` is ``(n, 1)`` or ``(n,)``.
    """

    def forward(self, scores: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
        order = torch.sort(truth[:, 1], descending=True, stable=True).indices
        s = scores.reshape(-1)[order]
        events = truth[order, 0]
        return ((torch.logcumsumexp(s, dim=0) - s) * events).mean()
