"""Fed-Heart-Disease constants, as FLamby defines them (reference §0, §1.7)."""

from flamby_flare.datasets.lazy import torch_optimizer
from flamby_flare.datasets.rounds import round_budget
from flamby_flare.download import DatasetSource, RemoteFile

NUM_CLIENTS = 4
BATCH_SIZE = 4
NUM_EPOCHS_POOLED = 50
LR = 0.001
Optimizer: type  # torch.optim.Adam, imported when used (flamby_flare.datasets.lazy)
__getattr__ = torch_optimizer("Adam")
METRIC_NAME = "accuracy"
CENTER_NAMES = ("cleveland", "hungarian", "switzerland", "va")

# 486 is FLamby's hard-coded pooled train size N of the formula
get_nb_max_rounds = round_budget(486, NUM_CLIENTS, BATCH_SIZE, NUM_EPOCHS_POOLED)


_UCI = "https://archive.ics.uci.edu/ml/machine-learning-databases/heart-disease/"
SOURCE = DatasetSource(
    name="fed_heart_disease",
    title="Fed-Heart-Disease",
    files=(
        RemoteFile(
            "processed.cleveland.data",
            _UCI + "processed.cleveland.data",
            "a74b7efa387bc9d108d7d0115d831fe9b414b29ae7124f331b622b4efa0427c8",
        ),
        RemoteFile(
            "processed.hungarian.data",
            _UCI + "processed.hungarian.data",
            "d1ad108f785768cd3d7e82dc522e6f5a61eea93cccfb3a46ee8076f73fc3d796",
        ),
        RemoteFile(
            "processed.switzerland.data",
            _UCI + "processed.switzerland.data",
            "834a405ccf5b66ab4056bb77794adc8df0b7125186454c0a1d002d33c6c3b314",
        ),
        RemoteFile(
            "processed.va.data",
            _UCI + "processed.va.data",
            "e7c93d8d0d2acdadfa4c5e8de768e2191e7f618b952e29623f1f0d5949ff6b8f",
        ),
    ),
    center_files=tuple((f"processed.{name}.data",) for name in CENTER_NAMES),
    license="CC BY 4.0 (UCI Machine Learning Repository, Heart Disease)",
    citation="Janosi, Steinbrunn, Pfisterer, Detrano (1988). Heart Disease. UCI Machine Learning "
    "Repository. doi:10.24432/C52P4X; FLamby: Ogier du Terrail et al., NeurIPS 2022",
)
