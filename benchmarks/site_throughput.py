"""Site-training throughput of the image datasets: our loader + model (the site's one local loop, ``flamby_flare.local_training``: batches
built by ``get_batch`` from the memory-mapped cache, augmented, in the site's process or DataLoader workers)
against a plain PyTorch loop over the same batches already in memory (forward, loss, backward, SGD step only).
The ratio ours / plain says how much the loader costs: 1.0 means the model, not the loader, is the limit.

Usage: python benchmarks/site_throughput.py [--data-root ROOT] [--device cpu|cuda] [--precision fp32|bf16]
           [--workers 0 1 ...] [--updates N] [--out FILE.json]
Without --data-root, synthetic raw files (tests/synthetic_images.py) are preprocessed into a scratch root.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from executors.batch_stream import BatchStream  # noqa: E402
from executors.trainer import SiteTrainer  # noqa: E402
from flamby_flare.datasets import get_dataset  # noqa: E402
from flamby_flare.local_training import SGDStep, local_steps  # noqa: E402
from flamby_flare.strategies.base import SiteRule  # noqa: E402

DATASETS = {"fed_ixi": 0, "fed_isic2019": 0}  # the center measured (the largest)


def synthetic_root() -> Path:
    from flamby_flare.cli import main
    from tests.synthetic_images import write_isic_mirror, write_ixi_mirror

    scratch = Path(tempfile.mkdtemp(prefix="flamby_throughput_"))
    mirror = REPO.parent / "shared" / "mirror"
    write_ixi_mirror(scratch / "mirror", mirror, per_center=(16, 2))
    write_isic_mirror(scratch / "mirror", mirror, per_center=(128, 2))
    for name in DATASETS:
        main(["preprocess", name, "--mirror", str(scratch / "mirror"), "--data-root", str(scratch / "data")])
    return scratch / "data"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    dataset: str, root: Path, device: str, precision: str, workers: int, updates: int, batch_size: int, repeats: int = 2
) -> dict:
    trainer = SiteTrainer(dataset, DATASETS[dataset], root, device, num_workers=workers, precision=precision)
    model, dev = trainer.model, trainer.device
    stream = BatchStream(trainer.n_train, batch_size, seed=0)
    batches = list(stream.seeded(0, updates + 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()
    from flamby_flare.datasets.tensor_dataset import fetch_batch

    tensors = [tuple(t.to(dev) for t in fetch_batch(trainer.train_set, i, s)) for i, s in batches[1:]]

    def ours(chosen) -> None:
        local_steps(model, trainer.load(chosen), trainer.loss_fn, SiteRule(), SGDStep(optimizer), trainer.autocast)

    def ours_loop() -> None:
        ours(batches[1:])

    def plain_loop() -> None:  # the same batches, already on the device
        for X, y in tensors:
            with trainer.autocast():
                loss = trainer.loss_fn(model(X), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    ours(batches[:1])  # warm-up (cuDNN autotune, allocator)
    best = {ours_loop: float("inf"), plain_loop: float("inf")}
    for _ in range(repeats):  # alternated, best of each: the machine's drift hits both alike
        for loop in best:
            _sync(dev)
            start = time.perf_counter()
            loop()
            _sync(dev)
            best[loop] = min(best[loop], time.perf_counter() - start)
    ours, plain = best[ours_loop], best[plain_loop]
    samples = sum(len(y) for _, y in tensors)
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None
    return {
        "dataset": dataset,
        "device": str(dev),
        "precision": precision,
        "workers": trainer.num_workers,
        "batch_size": batch_size,
        "updates": updates,
        "repeats": repeats,
        "ours_samples_per_s": round(samples / ours, 2),
        "plain_samples_per_s": round(samples / plain, 2),
        "ratio": round(plain / ours, 3),
        "peak_gpu_mib": None if peak is None else round(peak, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="alternated timings of each loop; the best counts")
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs=2,
        default=None,
        metavar=("IXI", "ISIC"),
        help="batch sizes (default: FLamby's, 2 and 64)",
    )
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (a simulator site uses 1)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = args.data_root or synthetic_root()
    sizes = dict(zip(DATASETS, args.batch_sizes or [get_dataset(d).BATCH_SIZE for d in DATASETS]))
    rows = [
        measure(d, root, args.device, args.precision, w, args.updates, sizes[d], args.repeats)
        for d in args.datasets
        for w in args.workers
    ]
    print("| dataset | device | precision | workers | batch | ours samples/s | plain loop samples/s | ours / plain |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['dataset']} | {r['device']} | {r['precision']} | {r['workers']} | {r['batch_size']} | "
            f"{r['ours_samples_per_s']} | {r['plain_samples_per_s']} | {r['ratio']} |"
        )
    if args.out:
        machine = {
            "cpu_threads": args.threads,
            "platform": platform.platform(),
            "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        }
        args.out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
