"""Fed-IXI constants, as FLamby defines them (reference §0, §1.3), and where its raw files come from."""

from flamby_flare.datasets.lazy import torch_optimizer
from flamby_flare.datasets.rounds import round_budget
from flamby_flare.download import DatasetSource, RemoteFile

NUM_CLIENTS = 3
BATCH_SIZE = 2
NUM_EPOCHS_POOLED = 10
LR = 1e-3
Optimizer: type  # torch.optim.AdamW, imported when used (flamby_flare.datasets.lazy)
__getattr__ = torch_optimizer("AdamW")
METRIC_NAME = "dice"
CENTER_NAMES = ("Guys", "HH", "IOP")

# FLamby's per-center sizes (reference §0), which preprocessing checks the cache against
FLAMBY_SIZES = {"train": (249, 145, 59), "test": (62, 36, 15)}

# 450 is FLamby's hard-coded pooled train size N of the formula
get_nb_max_rounds = round_budget(450, NUM_CLIENTS, BATCH_SIZE, NUM_EPOCHS_POOLED)


def _verify(name: str, path) -> None:
    if name == ARCHIVE:
        from flamby_flare.datasets.fed_ixi.preprocess import verify_archive

        verify_archive(path)


# IXI-Tiny (TorchIO) from Mendeley Data, version 3 (FLamby's version-1 link is dead). Mendeley publishes no
# checksum: the archive is checked for IXI-Tiny's layout and its hash recorded at the first download.
ARCHIVE = "7kd5wj7v7p-3.zip"
METADATA = "metadata_tiny.csv"
SOURCE = DatasetSource(
    name="fed_ixi",
    title="Fed-IXI",
    files=(
        RemoteFile(ARCHIVE, "https://prod-dcd-datasets-cache-zipfiles.s3.eu-west-1.amazonaws.com/" + ARCHIVE, None),
        RemoteFile(
            METADATA,
            "https://raw.githubusercontent.com/owkin/FLamby/main/flamby/datasets/fed_ixi/metadata/" + METADATA,
            "ad3a677659b162f48c5509e9c16a36d35a75f50b0cfb1461bbb183a1e9f61c46",
        ),
    ),
    license="CC BY-SA 3.0 (IXI dataset, brain-development.org); IXI-Tiny by TorchIO; FLamby's split file MIT",
    citation="IXI dataset, https://brain-development.org/ixi-dataset/; Perez-Garcia, Sparks, Ourselin, TorchIO, "
    "Comput. Methods Programs Biomed. 2021 (IXI-Tiny); FLamby: Ogier du Terrail et al., NeurIPS 2022",
    verify=_verify,
)
