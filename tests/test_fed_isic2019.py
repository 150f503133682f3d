"""Fed-ISIC2019: model, loss and metric against FLamby's definitions and hand computations; download,
preprocessing, transforms and loading on synthetic ISIC 2019 files in their real layout
(``tests/synthetic_images.py``) beside FLamby's real split and HAM10000 files."""

import json
import math
import shutil
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch

from flamby_flare.datasets.fed_isic2019 import FedIsic2019
from flamby_flare.datasets.fed_isic2019.common import FLAMBY_SIZES
from flamby_flare.datasets.fed_isic2019.loss import CLASS_WEIGHTS, BaselineLoss
from flamby_flare.datasets.fed_isic2019.metric import metric
from flamby_flare.datasets.fed_isic2019.model import Baseline
from flamby_flare.datasets.fed_isic2019.model import Baseline as FedIsic2019Baseline
from flamby_flare.datasets.fed_isic2019.preprocess import color_constancy, preprocess_image, resized_size, samples
from flamby_flare.datasets.fed_isic2019.transforms import normalize


def test_efficientnet_b0_with_an_8_class_head():
    model = Baseline()
    assert sum(p.numel() for p in model.parameters()) == 4_017_796  # FLamby's EfficientNet-b0 + Linear(1280, 8)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    model.eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 200, 200)).shape == (2, 8)


def test_the_same_seed_gives_flambys_initial_model():
    """FLamby's ``Baseline(pretrained=False)``: ``EfficientNet.from_name`` then an 8-class ``_fc``, under
    ``base_model``. Against FLamby's own class in its environment, seed 0: the same 360 state-dict names and
    values, and the same logits on a 200 px batch."""
    from efficientnet_pytorch import EfficientNet

    torch.manual_seed(0)
    flamby = EfficientNet.from_name("efficientnet-b0")
    flamby._fc = torch.nn.Linear(flamby._fc.in_features, 8)
    torch.manual_seed(0)
    ours = Baseline()
    expected = {f"base_model.{k}": v for k, v in flamby.state_dict().items()}
    assert list(ours.state_dict()) == list(expected)
    assert all(torch.equal(v, expected[k]) for k, v in ours.state_dict().items())
    blocks = ours.base_model._blocks
    assert ours.base_model._bn0.eps == 1e-3 and ours.base_model._bn0.momentum == pytest.approx(0.01)  # 1 - 0.99
    assert ours.base_model._global_params.dropout_rate == 0.2 and blocks[0]._block_args.se_ratio == 0.25
    assert ours.base_model._global_params.drop_connect_rate == 0.2


def test_pretrained_weights_load_from_a_local_file_only(tmp_path):
    from efficientnet_pytorch import EfficientNet

    source = EfficientNet.from_name("efficientnet-b0")  # stands for the ImageNet file FLamby loads (1000 classes)
    torch.save(source.state_dict(), tmp_path / "efficientnet-b0-355c32eb.pth")
    model = Baseline(tmp_path / "efficientnet-b0-355c32eb.pth")
    assert torch.equal(model.base_model._conv_stem.weight, source._conv_stem.weight)
    assert model.base_model._fc.out_features == 8
    torch.save({"x": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="is not an efficientnet-b0 state dict of efficientnet_pytorch"):
        Baseline(tmp_path / "bad.pt")


def test_class_weights_are_pooled_train_size_over_class_counts():
    counts = np.array([3332, 9084, 2649, 712, 1950, 184, 201, 485])
    np.testing.assert_allclose(CLASS_WEIGHTS, counts.sum() / counts, atol=1e-4)


def test_focal_loss_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0, 0, 0, 0, 0, 0], [0.0, 0, 0, 0, 0, 1.0, 0, 0]])
    target = torch.tensor([0, 5])
    expected = []
    for row, y in zip(logits, target):
        p = math.exp(row[y]) / sum(math.exp(v) for v in row)
        expected.append(-CLASS_WEIGHTS[y] * (1 - p) ** 2 * math.log(p))
    assert float(BaselineLoss()(logits, target)) == pytest.approx(sum(expected) / 2, rel=1e-5)


def test_balanced_accuracy():
    y = np.array([0, 0, 0, 1])
    logits = np.eye(8)[[0, 0, 1, 1]]  # class 0: 2/3 right, class 1: 1/1
    assert metric(y, logits) == pytest.approx((2 / 3 + 1) / 2)


def test_flambys_split_file_gives_flambys_center_sizes(mirror):
    split = pd.read_csv(mirror / "fed_isic2019" / "train_test_split.csv")
    sizes = split.groupby(["center", "fold"]).size()
    assert tuple(sizes[(c, "train")] for c in range(6)) == FLAMBY_SIZES["train"]
    assert tuple(sizes[(c, "test")] for c in range(6)) == FLAMBY_SIZES["test"]
    assert len(split) == 23_247 and sum(FLAMBY_SIZES["train"]) == 18_597


def test_resize_keeps_the_aspect_with_the_shorter_side_224():
    assert resized_size(1024, 768) == (298, 224)  # 1024 * 224 / 768 = 298.67, truncated as FLamby
    assert resized_size(450, 600) == (224, 298)
    assert resized_size(224, 224) == (224, 224)


def test_shades_of_gray_color_constancy_by_hand():
    image = np.array([[[200, 100, 50], [100, 50, 150]]], dtype=np.uint8)
    e = ((image.astype(float) ** 6).mean(axis=(0, 1))) ** (1 / 6)
    e = e / np.sqrt((e**2).sum())
    expected = np.clip(image / (e * np.sqrt(3)), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(color_constancy(image), expected)
    gray = np.full((4, 4, 3), 90, np.uint8)  # a gray world stays as it is
    np.testing.assert_array_equal(color_constancy(gray), gray)


def test_preprocessed_cache_and_flambys_centers(image_data_root, image_mirror):
    folder = image_data_root("fed_isic2019") / "fed_isic2019"
    record = json.loads((folder / "preprocessed" / ".preprocessed.json").read_text())
    assert record["images"] == 30 and set(record["sizes"].values()) == {"3/2"}
    for center in range(6):
        train, test = FedIsic2019(center, True, data_path=folder), FedIsic2019(center, False, data_path=folder)
        assert (len(train), len(test)) == (3, 2)
        split = pd.read_csv(folder / "train_test_split.csv").set_index("image")
        assert all(split.at[i, "center"] == center and split.at[i, "fold"] == "train" for i in train.images)
        assert train.targets.tolist() == [int(split.at[i, "target"]) for i in train.images]
    dataset = FedIsic2019(0, True, data_path=folder)
    with zipfile.ZipFile(folder / "ISIC_2019_Training_Input.zip") as archive:
        with archive.open(f"ISIC_2019_Training_Input/{dataset.images[0]}.jpg") as f:
            from PIL import Image

            width, height = Image.open(f).size
        with archive.open(f"ISIC_2019_Training_Input/{dataset.images[0]}.jpg") as f:
            expected = preprocess_image(f, resized_size(width, height))
    cached = dataset.image(0)
    assert min(cached.shape[1:]) == 224 and cached.dtype == torch.uint8
    np.testing.assert_array_equal(cached.permute(1, 2, 0).numpy(), expected)
    assert len(FedIsic2019(train=False, pooled=True, data_path=folder)) == 12


def test_labels_or_centers_disagreeing_with_flambys_split_are_refused(tmp_path, image_data_root):
    folder = tmp_path / "fed_isic2019"
    shutil.copytree(
        image_data_root("fed_isic2019") / "fed_isic2019", folder, ignore=shutil.ignore_patterns("preprocessed")
    )
    truth = pd.read_csv(folder / "ISIC_2019_Training_GroundTruth.csv")
    truth.loc[0, ["MEL", "NV", "BCC"]] = [0.0, 0.0, 1.0]
    truth.to_csv(folder / "ISIC_2019_Training_GroundTruth.csv", index=False)
    with pytest.raises(
        ValueError, match="1 images' center or label differ between the ISIC CSVs and train_test_split.csv"
    ):
        samples(folder)


def test_train_and_test_transforms(image_data_root):
    folder = image_data_root("fed_isic2019") / "fed_isic2019"
    train = FedIsic2019(1, True, data_path=folder)
    X, y = train.get_batch(torch.tensor([2, 0, 1]), seed=5)
    assert X.shape == (3, 3, 200, 200) and X.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(X, train.get_batch(torch.tensor([2, 0, 1]), seed=5)[0])  # a batch is a function of its seed
    assert not torch.equal(X, train.get_batch(torch.tensor([2, 0, 1]), seed=6)[0])
    low, high = normalize(torch.zeros(3, 1, 1)), normalize(torch.full((3, 1, 1), 255.0))
    assert bool(((X >= low - 1e-5) & (X <= high + 1e-5)).all())  # pixel values stay in [0, 255] before normalization
    test = FedIsic2019(1, False, data_path=folder)
    Xt, _ = test.get_batch(torch.tensor([0]))
    image = test.image(0).float()
    top, left = (image.shape[1] - 200) // 2, (image.shape[2] - 200) // 2
    assert torch.allclose(Xt[0], normalize(image[:, top : top + 200, left : left + 200]))
    assert torch.equal(Xt, test.get_batch(torch.tensor([0]), seed=1)[0])  # no augmentation at test time


def test_each_augmentation_applies_with_flambys_probability_and_rotation_reflects():
    """albumentations' p = 0.5 for every step but the crop (FLamby, 400 draws: dropout on 56% of the views with
    its 4 holes, 1.43% zero pixels; here 48% and 1.41%), and Rotate's reflected borders: no black corners (the
    old zero-filled rotation blacked 4.6% of the pixels)."""
    from flamby_flare.datasets.fed_isic2019.transforms import MEAN, STD, train_transform

    generator = torch.Generator().manual_seed(0)
    image = torch.randint(50, 201, (3, 224, 300), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with_holes, zero = 0, 0.0
    for _ in range(400):
        holes = ((train_transform(image, generator) * STD + MEAN).abs() < 0.5).all(0)
        with_holes += int(holes.sum() >= 256)
        zero += float(holes.float().mean())
    assert 0.42 < with_holes / 400 < 0.58  # p 0.5: 400 draws put it there with probability > 0.998
    assert 0.0125 < zero / 400 < 0.016  # 1 to 8 holes of 16 x 16 in half the views: 0.5 x 4.5 x 256 / 200^2


def test_rotation_is_about_the_centre_with_edge_pixels_not_repeated():
    from flamby_flare.datasets.fed_isic2019.transforms import rotate_reflect

    image = torch.arange(35, dtype=torch.float32).view(1, 5, 7)
    assert torch.allclose(rotate_reflect(image, 0.0), image, atol=1e-4)
    square = torch.arange(25, dtype=torch.float32).view(1, 5, 5)
    assert torch.allclose(rotate_reflect(square, 90.0), torch.rot90(square, 1, (1, 2)), atol=1e-3)
    wide = rotate_reflect(image, 90.0)  # a 5 x 7 canvas: columns 0 and 6 fall outside the rotated image
    assert torch.equal(wide[..., 0], wide[..., 2]) and torch.equal(wide[..., 6], wide[..., 4])  # reflected about 1, 5


def test_loader_workers_do_not_change_training(image_data_root):
    from executors.trainer import SiteTrainer
    from flamby_flare.model_state import to_numpy_state
    from flamby_flare.protocol import TrainPlan

    plan = TrainPlan(dataset="fed_isic2019", seed=3, learning_rate=0.01, num_updates=2, batch_size=2)
    results = []
    for workers in (0, 2):
        trainer = SiteTrainer("fed_isic2019", 2, image_data_root("fed_isic2019"), "cpu", num_workers=workers)
        torch.manual_seed(0)
        start = to_numpy_state(FedIsic2019Baseline())
        results.append(trainer.train(start, plan, round_index=1).params)
    assert all(np.array_equal(results[0][k], results[1][k]) for k in results[0])


def test_pretrained_weights_start_the_run(tmp_path):
    from efficientnet_pytorch import EfficientNet

    from flamby_flare.datasets import get_dataset
    from flamby_flare.model_state import initial_model

    source = EfficientNet.from_name("efficientnet-b0")
    torch.save(source.state_dict(), tmp_path / "b0.pt")
    model = initial_model(get_dataset("fed_isic2019"), 42, tmp_path / "b0.pt")
    assert torch.equal(model.base_model._blocks[3]._expand_conv.weight, source._blocks[3]._expand_conv.weight)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded"):
        initial_model(get_dataset("fed_isic2019"), 42, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="Fed-Heart-Disease's baseline takes no pretrained weights"):
        initial_model(get_dataset("fed_heart_disease"), 42, tmp_path / "b0.pt")


def test_bf16_autocast_trains_and_evaluates(image_data_root):
    from executors.trainer import SiteTrainer
    from flamby_flare.model_state import to_numpy_state
    from flamby_flare.protocol import TrainPlan

    trainer = SiteTrainer("fed_isic2019", 0, image_data_root("fed_isic2019"), "cpu", precision="bf16")
    start = to_numpy_state(FedIsic2019Baseline())
    plan = TrainPlan(dataset="fed_isic2019", seed=1, learning_rate=0.01, num_updates=1, batch_size=2)
    result = trainer.train(start, plan, round_index=0)
    assert all(v.dtype == start[k].dtype for k, v in result.params.items())  # the exchanged model stays float32
    assert any(not np.array_equal(result.params[k], start[k]) for k in start) and math.isfinite(result.loss)
    assert 0.0 <= trainer.evaluate(result.params) <= 1.0
    with pytest.raises(ValueError, match="precision must be one of fp32, bf16"):
        SiteTrainer("fed_isic2019", 0, image_data_root("fed_isic2019"), "cpu", precision="fp16")
