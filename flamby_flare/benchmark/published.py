"""FLamby's published benchmark, summarized: per dataset and method, the mean and sample sd over seeds of
the per-seed mean over local test sets, and the number of non-NaN seeds.

Derived by flamby-flare from the result CSVs of FLamby (Ogier du Terrail et al., "FLamby: Datasets and
Benchmarks for Cross-Silo Federated Learning in Realistic Healthcare Settings", NeurIPS 2022 Datasets and
Benchmarks; github.com/owkin/FLamby at commit edacf54, MIT license), with ``flamby_flare.reference``. It
lets ``flamby-flare report`` compare without FLamby's files; ``--reference DIR`` recomputes it from them.
"""

PUBLISHED: dict[str, dict[str, tuple[float, float, int]]] = {
    "fed_camelyon16": {
        "Cyclic100": (0.5540, 0.0089, 5),
        "FedAdagrad100": (0.5098, 0.0794, 5),
        "FedAdam100": (0.5232, 0.0223, 4),
        "FedAvg100": (0.5905, 0.0271, 5),
        "FedProx100": (0.5773, 0.0180, 5),
        "FedYogi100": (0.4726, 0.0795, 5),
        "Local 0": (0.7759, 0.0257, 5),
        "Local 1": (0.7541, 0.0238, 5),
        "Pooled Training": (0.7886, 0.0567, 5),
        "Scaffold100": (0.6374, 0.0652, 5),
    },
    "fed_lidc_idri": {
        "Cyclic100": (0.0009, 0.0000, 1),
        "FedAdagrad100": (0.0012, 0.0000, 1),
        "FedAdam100": (0.2640, 0.0000, 1),
        "FedAvg100": (0.0002, 0.0000, 1),
        "FedProx100": (0.0002, 0.0000, 1),
        "FedYogi100": (0.0002, 0.0000, 1),
        "Local 0": (0.3353, 0.0000, 1),
        "Local 1": (0.1434, 0.0000, 1),
        "Local 2": (0.2810, 0.0000, 1),
        "Local 3": (0.1951, 0.0000, 1),
        "Pooled Training": (0.3844, 0.0000, 1),
        "Scaffold100": (0.1373, 0.0000, 1),
    },
    "fed_ixi": {
        "Cyclic100": (0.4848, 0.0431, 5),
        "FedAdagrad100": (0.6874, 0.0874, 5),
        "FedAdam100": (0.4169, 0.0943, 5),
        "FedAvg100": (0.7724, 0.0204, 5),
        "FedProx100": (0.7720, 0.0205, 5),
        "FedYogi100": (0.4189, 0.0980, 5),
        "Local 0": (0.9822, 0.0014, 5),
        "Local 1": (0.9718, 0.0025, 5),
        "Local 2": (0.9564, 0.0103, 5),
        "Pooled Training": (0.9868, 0.0003, 5),
        "Scaffold100": (0.7738, 0.0213, 5),
    },
    "fed_tcga_brca": {
        "Cyclic100": (0.6582, 0.0429, 5),
        "FedAdagrad100": (0.8129, 0.0048, 5),
        "FedAdam100": (0.8152, 0.0256, 5),
        "FedAvg100": (0.7319, 0.1811, 5),
        "FedProx100": (0.7290, 0.1683, 5),
        "FedYogi100": (0.8152, 0.0256, 5),
        "Local 0": (0.7282, 0.0378, 5),
        "Local 1": (0.7496, 0.0369, 5),
        "Local 2": (0.4977, 0.0260, 5),
        "Local 3": (0.6562, 0.0654, 5),
        "Local 4": (0.7121, 0.0320, 5),
        "Local 5": (0.6913, 0.0081, 5),
        "Pooled Training": (0.6759, 0.0949, 5),
        "Scaffold100": (0.6869, 0.0360, 5),
    },
    "fed_kits19": {
        "Cyclic100": (0.3661, 0.0406, 5),
        "FedAdagrad100": (0.4173, 0.0555, 5),
        "FedAdam100": (0.3325, 0.0395, 5),
        "FedAvg100": (0.5142, 0.0598, 5),
        "FedProx100": (0.5615, 0.0710, 5),
        "FedYogi100": (0.3375, 0.0311, 5),
        "Local 0": (0.4595, 0.0444, 5),
        "Local 1": (0.4432, 0.0174, 5),
        "Local 2": (0.3344, 0.0696, 5),
        "Local 3": (0.4461, 0.0312, 5),
        "Local 4": (0.4397, 0.0359, 5),
        "Local 5": (0.5159, 0.0313, 5),
        "Pooled Training": (0.6636, 0.0922, 5),
        "Scaffold100": (0.5525, 0.0626, 5),
    },
    "fed_isic2019": {
        "Cyclic100": (0.4378, 0.0135, 5),
        "FedAdagrad100": (0.5529, 0.0308, 5),
        "FedAdam100": (0.5843, 0.0390, 5),
        "FedAvg100": (0.5388, 0.0967, 5),
        "FedProx100": (0.5437, 0.0740, 5),
        "FedYogi100": (0.5454, 0.0328, 5),
        "Local 0": (0.5364, 0.0110, 5),
        "Local 1": (0.3775, 0.0233, 5),
        "Local 2": (0.5356, 0.0224, 5),
        "Local 3": (0.4360, 0.0174, 5),
        "Local 4": (0.3350, 0.0091, 5),
        "Local 5": (0.2202, 0.0141, 5),
        "Pooled Training": (0.7078, 0.0159, 5),
        "Scaffold100": (0.5308, 0.0563, 5),
    },
    "fed_heart_disease": {
        "Cyclic100": (0.7180, 0.0287, 5),
        "FedAdagrad100": (0.7314, 0.0125, 5),
        "FedAdam100": (0.7255, 0.0138, 5),
        "FedAvg100": (0.6850, 0.0283, 5),
        "FedProx100": (0.6850, 0.0283, 5),
        "FedYogi100": (0.7314, 0.0125, 5),
        "Local 0": (0.7221, 0.0211, 5),
        "Local 1": (0.6287, 0.0169, 5),
        "Local 2": (0.5670, 0.0579, 5),
        "Local 3": (0.6366, 0.0386, 5),
        "Pooled Training": (0.7353, 0.0027, 5),
        "Scaffold100": (0.6840, 0.0280, 5),
    },
}


# FLamby's DP example on Fed-Heart-Disease (``flamby/dp_example``: FedAvg, SGD lr 0.001, 15 rounds x 100
# updates, Opacus max_grad_norm 1.1, seeds 42-46): (target epsilon, target delta) -> (mean, sd, seeds) of
# the per-seed mean accuracy over the 4 local test sets; (None, None) is its no-DP run.
DP_PUBLISHED: dict[str, dict[tuple[float | None, float | None], tuple[float, float, int]]] = {
    "fed_heart_disease": {
        (None, None): (0.7125, 0.0238, 5),
        (0.1, 0.0001): (0.6056, 0.1213, 5),
        (0.1, 0.001): (0.6292, 0.0862, 5),
        (0.1, 0.01): (0.6673, 0.0515, 5),
        (0.1, 0.1): (0.7108, 0.0294, 5),
        (1.0, 0.0001): (0.6853, 0.0548, 5),
        (1.0, 0.001): (0.7015, 0.0439, 5),
        (1.0, 0.01): (0.7059, 0.0382, 5),
        (1.0, 0.1): (0.7031, 0.0448, 5),
        (5.0, 0.0001): (0.7036, 0.0487, 5),
        (5.0, 0.001): (0.6997, 0.0409, 5),
        (5.0, 0.01): (0.7004, 0.0433, 5),
        (5.0, 0.1): (0.7049, 0.0358, 5),
        (10.0, 0.0001): (0.7004, 0.0549, 5),
        (10.0, 0.001): (0.6981, 0.0430, 5),
        (10.0, 0.01): (0.6999, 0.0507, 5),
        (10.0, 0.1): (0.6978, 0.0387, 5),
        (50.0, 0.0001): (0.7016, 0.0521, 5),
        (50.0, 0.001): (0.6995, 0.0396, 5),
        (50.0, 0.01): (0.7026, 0.0432, 5),
        (50.0, 0.1): (0.7036, 0.0458, 5),
    },
}

# FLamby's personalization example (``compare_fedavg_vs_perso.py``: FedAvg at lr 0.00316227 (heart), 0.316227
# (Camelyon16), 0.01 (ISIC), 100 updates, FLamby's rounds; then 100 fine-tuning steps; seeds 42-46):
# (mean, sd, seeds) of the per-seed mean over local test sets, for the global model and the fine-tuned ones.
PERSONALIZATION_PUBLISHED: dict[str, dict[str, tuple[float, float, int]]] = {
    "fed_heart_disease": {"global": (0.7178, 0.0160, 5), "finetune100": (0.7351, 0.0086, 5)},
    "fed_camelyon16": {"global": (0.6192, 0.0741, 5), "finetune100": (0.5486, 0.1070, 5)},
    "fed_isic2019": {"global": (0.5911, 0.0147, 5), "finetune100": (0.6496, 0.0183, 5)},
}
