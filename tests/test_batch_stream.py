"""FLamby's endless batch stream, derived from (seed, position)."""

import torch

from executors.batch_stream import BatchStream


def test_each_epoch_is_a_permutation_with_a_short_last_batch():
    stream = BatchStream(n_samples=10, batch_size=4, seed=1)
    batches = list(stream.batches(0, 6))
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2]
    assert sorted(torch.cat(batches[:3]).tolist()) == list(range(10))
    assert sorted(torch.cat(batches[3:]).tolist()) == list(range(10))
    assert torch.cat(batches[:3]).tolist() != torch.cat(batches[3:]).tolist()  # reshuffled each epoch


def test_rounds_continue_the_stream():
    stream = BatchStream(n_samples=30, batch_size=4, seed=7)
    whole = list(stream.batches(0, 25))
    pieces = list(stream.batches(0, 10)) + list(BatchStream(30, 4, 7).batches(10, 15))
    assert all(torch.equal(a, b) for a, b in zip(whole, pieces, strict=True))


def test_seed_changes_the_order():
    a = torch.cat(list(BatchStream(50, 8, 1).batches(0, 7)))
    b = torch.cat(list(BatchStream(50, 8, 2).batches(0, 7)))
    assert not torch.equal(a, b)


def test_a_dataset_that_draws_nothing_from_its_batch_seed_gets_none():
    """The augmentation seeds cost 1 ms a round of 100 updates: skipped where the dataset ignores them."""
    stream = BatchStream(30, 4, 7)
    seeded = list(stream.seeded(5, 9))
    unseeded = list(stream.seeded(5, 9, seeds=False))
    assert [s for _, s in unseeded] == [None] * 9 and len({s for _, s in seeded}) == 9
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(seeded, unseeded))


def test_which_datasets_use_their_batch_seed(data_root):
    from executors.trainer import SiteTrainer
    from flamby_flare.datasets.tensor_dataset import uses_batch_seed

    assert SiteTrainer("fed_heart_disease", 0, data_root, device="cpu").batch_seeds is False
    assert SiteTrainer("fed_tcga_brca", 0, data_root, device="cpu").batch_seeds is False
    assert uses_batch_seed(object()) is True  # one that does not say (the image datasets): seeded
