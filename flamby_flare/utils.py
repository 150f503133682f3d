"""FLamby's ``flamby.utils`` for in-process experiments: ``evaluate_model_on_tests``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def evaluate_model_on_tests(
    model, test_dataloaders: Sequence, metric: Callable, use_gpu: bool = True, return_pred: bool = False
):
    """``model``'s ``metric`` on each test loader, on the concatenation of all its predictions (FLamby's
    definition): ``{"client_test_0": ..., "client_test_1": ...}``; with ``return_pred`` also the true and
    predicted values per loader. Eval mode and no gradients while evaluating, train mode after; the
    model moves to the GPU when there is one and ``use_gpu``; torch's global generator is left as it was
    (a shuffled test loader does not move the training's random stream)."""
    import torch

    device = torch.device("cuda") if use_gpu and torch.cuda.is_available() else next(model.parameters()).device
    model = model.to(device)
    model.eval()
    results, y_true, y_pred = {}, {}, {}
    with torch.no_grad():
        for i, loader in enumerate(test_dataloaders):
            state = torch.get_rng_state()
            batches = iter(loader)
            torch.set_rng_state(state)
            truth, predictions = [], []
            for X, y in batches:
                predictions.append(model(X.to(device)).detach().cpu().float().numpy())
                truth.append(y.detach().cpu().numpy())
            name = f"client_test_{i}"
            y_true[name], y_pred[name] = np.concatenate(truth), np.concatenate(predictions)
            results[name] = metric(y_true[name], y_pred[name])
    model.train()
    return (results, y_true, y_pred) if return_pred else results
