"""FLamby's ImageNet weights: fetched like a dataset file (mirror or URL), checked against the SHA-256 their name
gives, cached under the data root, and used by default (Fed-ISIC2019's initial model, Fed-Camelyon16's tile
features). The weights files here are written by the tests in the real format (a state dict of the architecture):
nothing is downloaded."""

import json
import shutil

import pytest
import torch

from flamby_flare import pretrained
from flamby_flare.cli import main
from flamby_flare.download import sha256sum
from flamby_flare.errors import DatasetNotFoundError, DownloadError
from flamby_flare.pretrained import WEIGHTS, Weights, fetch, locate, start_weights

ISIC = WEIGHTS["fed_isic2019"]


def _efficientnet_file(folder, name=ISIC.name):
    from efficientnet_pytorch import EfficientNet

    torch.manual_seed(0)
    path = folder / "fed_isic2019" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(EfficientNet.from_name("efficientnet-b0").state_dict(), path)
    return path


def test_weights_whose_hash_is_not_the_one_their_name_gives_are_not_kept(tmp_path):
    mirror = tmp_path / "mirror"
    _efficientnet_file(mirror)
    with pytest.raises(DownloadError, match=r"does not match the SHA-256 its name gives \(355c32eb\.\.\., got"):
        fetch("fed_isic2019", tmp_path / "data", mirror, log=lambda line: None)
    assert not list((tmp_path / "data" / "pretrained").iterdir())  # nothing kept, not even the .part
    lines = []
    path = fetch("fed_isic2019", tmp_path / "data", mirror, log=lines.append, accept_other=True)
    assert "NOT the published file" in lines[-1] and "kept as --accept-new-checksums asks" in lines[-1]
    assert path == tmp_path / "data" / "pretrained" / ISIC.name
    assert locate("fed_isic2019", tmp_path / "data") == path


def test_the_published_file_is_verified_by_its_name_then_by_its_recorded_hash(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    source = _efficientnet_file(mirror)
    digest = sha256sum(source)
    named = Weights("fed_isic2019", f"efficientnet-b0-{digest[:8]}.pth", ISIC.url, ISIC.what, True)
    shutil.move(source, source.with_name(named.name))
    monkeypatch.setitem(pretrained.WEIGHTS, "fed_isic2019", named)  # a published file whose hash we know
    lines = []
    path = fetch("fed_isic2019", tmp_path / "data", mirror, log=lines.append)
    assert lines == [f"  {named.name}: fetched from {mirror / 'fed_isic2019' / named.name}, verified ({ISIC.what})"]
    assert path.with_name(path.name + ".sha256").read_text().strip() == digest
    fetch("fed_isic2019", tmp_path / "data", mirror, log=lines.append)
    assert lines[-1] == f"  {named.name}: verified"  # once there, not fetched again
    assert start_weights("fed_isic2019", data_root=tmp_path / "data") == path
    path.write_bytes(path.read_bytes()[:-1] + b"x")
    with pytest.raises(DatasetNotFoundError, match="changed since it was fetched.*flamby-flare download fed_isic2019"):
        locate("fed_isic2019", tmp_path / "data")


def test_a_file_that_is_not_the_architectures_state_dict_is_refused_even_when_accepted(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "fed_isic2019").mkdir(parents=True)
    torch.save({"x": torch.zeros(1)}, mirror / "fed_isic2019" / ISIC.name)
    with pytest.raises(DownloadError, match="not a state dict of efficientnet_pytorch's ImageNet EfficientNet-b0"):
        fetch("fed_isic2019", tmp_path / "data", mirror, log=lambda line: None, accept_other=True)
    assert not (tmp_path / "data" / "pretrained" / ISIC.name).exists()


def test_the_initial_model_starts_from_the_weights_by_default(tmp_path):
    """Fed-ISIC2019 starts from the fetched file unless told otherwise; missing, one line naming the command; a
    dataset whose baseline has no ImageNet weights starts from the seed."""
    with pytest.raises(DatasetNotFoundError, match=r"not found in .*pretrained: run `flamby-flare download fed_isic"):
        start_weights("fed_isic2019", data_root=tmp_path)
    assert start_weights("fed_isic2019", pretrained=False, data_root=tmp_path) is None
    assert start_weights("fed_isic2019", pretrained_weights="/w.pt", data_root=tmp_path).name == "w.pt"
    assert start_weights("fed_heart_disease", data_root=tmp_path) is None
    assert start_weights("fed_camelyon16", data_root=tmp_path) is None  # its weights are for the tile features


def test_the_benchmark_without_the_weights_stops_at_start_naming_the_command(tmp_path, image_data_root, capsys):
    root = image_data_root("fed_isic2019")
    args = ["benchmark", "--dataset", "fed_isic2019", "--data-root", str(root), "--out", str(tmp_path), "--seed", "1"]
    assert main([*args, "--strategy"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "flamby-flare download fed_isic2019" in err[0] and "--no-pretrained" in err[0]


def test_jobs_say_no_pretrained_in_the_servers_arguments(tmp_path):
    assert main(["jobs", "--out", str(tmp_path), "--dataset", "fed_isic2019", "--strategy", "fedavg"]) == 0
    server = tmp_path / "fed_isic2019_fedavg/app/config/config_fed_server.json"
    assert "pretrained" not in json.loads(server.read_text())["workflows"][0]["args"]  # the default: pretrained
    assert (
        main(["jobs", "--out", str(tmp_path), "--dataset", "fed_isic2019", "--strategy", "fedavg", "--no-pretrained"])
        == 0
    )
    assert json.loads(server.read_text())["workflows"][0]["args"]["pretrained"] is False


def test_camelyon16_features_come_from_the_fetched_resnet50(tmp_path, image_mirror):
    """``preprocess fed_camelyon16`` fetches torchvision's ResNet50 with the slides and computes the tile features
    with it (the cache records its SHA-256); without it in the mirror, one line before any work."""
    from torchvision.models import resnet50

    source = image_mirror("fed_camelyon16")
    bare = ["preprocess", "fed_camelyon16", "--mirror", str(source), "--data-root", str(tmp_path / "bare")]
    assert main(bare) == 1
    mirror = tmp_path / "mirror"
    shutil.copytree(source, mirror, symlinks=True)
    torch.manual_seed(1)
    torch.save(resnet50().state_dict(), mirror / "fed_camelyon16" / WEIGHTS["fed_camelyon16"].name)
    args = ["preprocess", "fed_camelyon16", "--mirror", str(mirror), "--data-root", str(tmp_path / "data")]
    assert main([*args, "--accept-new-checksums"]) == 0
    weights = tmp_path / "data" / "pretrained" / WEIGHTS["fed_camelyon16"].name
    extractor = json.loads((tmp_path / "data/fed_camelyon16/preprocessed/features/.extractor.json").read_text())
    assert extractor["weights_sha256"] == sha256sum(weights)
