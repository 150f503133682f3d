"""FLamby's round budget, shared by every dataset."""

from collections.abc import Callable


def nb_max_rounds(
    pooled_train_size: int, num_clients: int, batch_size: int, num_epochs_pooled: int, num_updates: int
) -> int:
    """FLamby's ``get_nb_max_rounds``: rounds of ``num_updates`` batch updates per client that match
    NUM_EPOCHS_POOLED epochs of a client of average size (N is FLamby's hard-coded pooled size)."""
    return (pooled_train_size // num_clients // batch_size) * num_epochs_pooled // num_updates


def round_budget(
    pooled_train_size: int, num_clients: int, batch_size: int, num_epochs_pooled: int
) -> Callable[..., int]:
    """A dataset's ``get_nb_max_rounds(num_updates, batch_size=BATCH_SIZE)``."""

    def get_nb_max_rounds(num_updates: int, batch_size: int = batch_size) -> int:
        return nb_max_rounds(pooled_train_size, num_clients, batch_size, num_epochs_pooled, num_updates)

    return get_nb_max_rounds
