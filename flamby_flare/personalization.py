"""Personalization settings, chosen on the server (the controller's ``personalization`` argument) and sent
to the sites in the train plan, so every site personalizes the same way (site code: ``executors.personalization``).

- ``finetune``: after federated training each site fine-tunes the final global model for ``num_updates``
  local updates (FLamby's ``FedAvgFineTuning``), evaluates it on its test set and keeps it.
- ``ditto`` (Li et al., "Ditto: Fair and Robust Federated Learning Through Personalization", ICML 2021): each
  site also trains a personal model v every round, ``num_updates`` SGD steps on f_k(v) + (lambda / 2)
  ||v - w_t||^2 toward the round's global model w_t; v never leaves the site.
- ``fedbn`` (Li et al., "FedBN: Federated Learning on Non-IID Features via Local Batch Normalization", ICLR
  2021): the normalization layers stay local: each site trains with its own, whatever the server sends.

Every run with personalization reports, per site, the global model's metric and the personalized one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

METHODS = ("finetune", "ditto", "fedbn")
OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class Personalization:
    """Args:
    method: ``finetune``, ``ditto`` or ``fedbn``.
    num_updates: fine-tuning updates (default 100, FLamby's example), or Ditto's personal updates per
        round (default: the round's local updates).
    learning_rate: SGD lr of the fine-tuning or personal updates (default: the sites' training lr).
    optimizer: fine-tuning optimizer, ``sgd`` (FLamby's) or ``adam``.
    ditto_lambda: Ditto's lambda, the pull of the personal model toward the global one.
    """

    method: str
    num_updates: int | None = None
    learning_rate: float | None = None
    optimizer: str = "sgd"
    ditto_lambda: float = 0.1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"personalization method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"personalization optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}"
            )
        if self.num_updates is not None and self.num_updates < 1:
            raise ValueError(f"personalization num_updates must be >= 1, got {self.num_updates}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ValueError(f"personalization learning_rate must be > 0, got {self.learning_rate}")
        if not self.ditto_lambda >= 0:
            raise ValueError(f"ditto_lambda must be >= 0, got {self.ditto_lambda}")

    @classmethod
    def from_dict(cls, values: dict | None) -> "Personalization | None":
        """From a job's JSON arguments (None: no personalization); unknown keys are refused."""
        if not values:
            return None
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"personalization: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**values)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def label(self) -> str:
        """How results name it: ``finetune100``, ``ditto(lambda=0.1)``, ``fedbn``."""
        if self.method == "finetune":
            return f"finetune{self.num_updates or 100}"
        if self.method == "ditto":
            return f"ditto(lambda={self.ditto_lambda:g})"
        return self.method


def normalization_keys(model) -> list[str]:
    """The state-dict entries of ``model``'s normalization layers (batch, instance, group and layer norm:
    weights, biases, running statistics)."""
    from torch import nn

    layers = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)  # _NormBase: batch and instance norm
    keys = []
    for name, module in model.named_modules():
        if isinstance(module, layers):
            keys += [f"{name}.{k}" if name else k for k in module.state_dict()]
    return keys


def head_keys(model) -> list[str]:
    """The state-dict entries of ``model``'s head: its last layer, the last module (in registration order)
    holding parameters of its own (FedPer's and FedRep's personal layers)."""
    last = None
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            last = (name, module)
    if last is None:
        raise ValueError(f"{type(model).__name__} has no parameters")
    name, module = last
    return [f"{name}.{k}" if name else k for k in module.state_dict() if "." not in k]
