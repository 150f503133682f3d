"""Fed-TCGA-BRCA constants, as FLamby defines them (reference §0, §1.4)."""

from flamby_flare.datasets.lazy import torch_optimizer
from flamby_flare.datasets.rounds import round_budget
from flamby_flare.download import DatasetSource, RemoteFile

NUM_CLIENTS = 6
BATCH_SIZE = 8
NUM_EPOCHS_POOLED = 30
LR = 1e-1
Optimizer: type  # torch.optim.Adam, imported when used (flamby_flare.datasets.lazy)
__getattr__ = torch_optimizer("Adam")
METRIC_NAME = "c_index"
CENTER_NAMES = ("Northeast", "South", "West", "Midwest", "Europe", "Canada")

# 866 is FLamby's hard-coded pooled train size N of the formula
get_nb_max_rounds = round_budget(866, NUM_CLIENTS, BATCH_SIZE, NUM_EPOCHS_POOLED)


# FLamby publishes the preprocessed clinical table and its split in its repository.
_FLAMBY = "https://raw.githubusercontent.com/owkin/FLamby/main/flamby/datasets/fed_tcga_brca/"
SOURCE = DatasetSource(
    name="fed_tcga_brca",
    title="Fed-TCGA-BRCA",
    files=(
        RemoteFile(
            "brca.csv", _FLAMBY + "brca.csv", "07cb53423f7d579d33cfdbf2cba57b2aee75318b85866c68ce39a75b1f1ba020"
        ),
        RemoteFile(
            "centers.csv", _FLAMBY + "centers.csv", "d610df2dae0203ea229c9579747ed3eb8d28e137c5378f55acc6fe6b4632bb1d"
        ),
        RemoteFile(
            "train_test_split.csv",
            _FLAMBY + "dataset_creation_scripts/train_test_split.csv",
            "1249c6543a4060ff0fdaf8510fc37017755836db6c9fc5e6af96057c36510990",
        ),
    ),
    license="TCGA open access (NIH GDC data use terms); FLamby's derived files MIT",
    citation="The Cancer Genome Atlas Network, TCGA-BRCA clinical data (GDC); Liu et al., Cell 2018 "
    "(TCGA-CDR); FLamby: Ogier du Terrail et al., NeurIPS 2022",
)
