"""Fed-Camelyon16's loss (reference §1.1): binary cross-entropy on the slide logit."""

from __future__ import annotations

from torch import nn


class BaselineLoss(nn.BCEWithLogitsLoss):
    pass
