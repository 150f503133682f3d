"""The one local training loop of a site, shared by every runner (the NVFlare site, FLamby's in-process
strategies, personalization): for each batch, the loss, then a step.

How a step is taken is the step object's business: ``SGDStep`` (backward, then the optimizer) or DP-SGD's
``privacy.dp_sgd.DPSGDRound`` (per-sample clipping and noise first). What a strategy changes is its site
rule's (``flamby_flare.strategies.base.SiteRule``): a penalty added to the loss, a gradient correction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch

    from flamby_flare.strategies.base import SiteRule


class Step(Protocol):
    def take(self, loss: "torch.Tensor", named: dict[str, "torch.Tensor"], rule: "SiteRule") -> None: ...


class SGD:
    """``torch.optim.SGD(params, lr)`` as FLamby's clients use it (no momentum, dampening, weight decay or
    Nesterov): ``zero_grad`` drops the gradients, ``step`` is p <- p - lr * grad, the very operation of
    torch's single-tensor SGD (bit for bit), without building a torch optimizer: the first one a process
    builds imports ``torch._dynamo`` (about 2.5 s), which every site process of a simulator run would pay."""

    def __init__(self, params, lr: float):
        self.params, self.lr = list(params), float(lr)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        import torch

        with torch.no_grad():
            for p in self.params:
                if p.grad is not None:
                    p.add_(p.grad, alpha=-self.lr)


class Adam:
    """``torch.optim.Adam(params, lr)`` with its defaults (betas 0.9, 0.999, eps 1e-8, no weight decay, amsgrad,
    maximize, foreach or fused) on CPU tensors, bit for bit: torch's single-tensor update
    (``torch.optim.adam._single_tensor_adam``), its step counted in a float32 tensor as torch keeps it, without
    building a torch optimizer (whose first construction imports ``torch._dynamo``: 1 s of every benchmark)."""

    betas, eps = (0.9, 0.999), 1e-8

    def __init__(self, params, lr: float):
        import torch

        self.params, self.lr = list(params), float(lr)
        self.state = [
            (
                torch.tensor(0.0),
                torch.zeros_like(p, memory_format=torch.preserve_format),
                torch.zeros_like(p, memory_format=torch.preserve_format),
            )
            for p in self.params
        ]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        import torch

        beta1, beta2 = self.betas
        with torch.no_grad():
            for p, (step_t, exp_avg, exp_avg_sq) in zip(self.params, self.state):
                if p.grad is None:
                    continue
                grad = p.grad
                step_t += 1
                exp_avg.lerp_(grad, 1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                step = step_t.item()
                bias_correction1 = 1 - beta1**step
                bias_correction2 = 1 - beta2**step
                step_size = self.lr / bias_correction1
                denom = (exp_avg_sq.sqrt() / bias_correction2**0.5).add_(self.eps)
                p.addcdiv_(exp_avg, denom, value=-step_size)


class SGDStep:
    """A plain step: the loss plus the rule's penalty, backward, the rule's correction, the optimizer."""

    def __init__(self, optimizer: "torch.optim.Optimizer"):
        self.optimizer = optimizer

    def take(self, loss, named, rule) -> None:
        penalty = rule.penalty(named)
        objective = loss if penalty is None else loss + penalty
        self.optimizer.zero_grad()
        objective.backward()
        rule.correct(named)
        self.optimizer.step()


def local_steps(
    model: "torch.nn.Module",
    batches: Iterable,
    loss_fn: Callable,
    rule: "SiteRule",
    step: Step,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    on_loss: Callable[["torch.Tensor"], None] | None = None,
) -> tuple["torch.Tensor | None", int]:
    """Train ``model`` in place on ``batches`` of ``(X, y)``; returns (summed loss, non-empty batches).
    ``on_loss`` sees every batch's loss (logging). An empty batch (DP-SGD's Poisson sampling) is a step
    without a loss."""
    named = dict(model.named_parameters())
    total, count = None, 0
    for X, y in batches:
        rule.on_batch(X, y, loss_fn)
        with autocast():
            loss = loss_fn(model(X), y)
        step.take(loss, named, rule)
        if len(y):
            total = loss.detach() if total is None else total + loss.detach()
            count += 1
            if on_loss is not None:
                on_loss(loss)
    return total, count


def mean_loss(total: "torch.Tensor | None", count: int) -> float:
    """The mean loss over the non-empty batches (0.0 when every batch was empty)."""
    return float(total) / count if count else 0.0


def dataset_loss(
    model: "torch.nn.Module",
    batches: Iterable,
    loss_fn: Callable,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> float:
    """The loss of ``model`` as it stands over a whole dataset given as ``batches`` of ``(X, y)``: the batch
    losses weighted by their sizes, summed in float64, over the number of samples. No gradient, the model
    in eval mode meanwhile (its mode is restored). q-FFL's F_k(w^t)."""
    import torch

    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    try:
        with torch.no_grad():
            for X, y in batches:
                with autocast():
                    total += float(loss_fn(model(X), y)) * len(y)
                n += len(y)
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("the dataset is empty: no loss to compute")
    return total / n
