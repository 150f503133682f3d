"""How flamby-flare installs and starts: extras, the version, ``python -m flamby_flare``, shadowed packages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

REPO = Path(__file__).resolve().parent.parent
IMAGE_MODULES = ("monai", "nibabel", "efficientnet_pytorch", "pydicom", "tiffslide")


def python(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120)


def blocked(*modules: str) -> str:
    """Python source making ``import m`` fail as if ``m`` were not installed."""
    return "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules)


def test_the_image_packages_are_an_extra_and_torch_a_range():
    from flamby_flare.datasets.lazy import EXTRAS

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = {d.split(">")[0].split("=")[0].split("[")[0].strip() for d in project["dependencies"]}
    assert not core & set(IMAGE_MODULES)
    assert (
        {d.split(">")[0] for d in project["optional-dependencies"]["images"]}
        == set(EXTRAS["images"])
        == set(IMAGE_MODULES)
    )
    torch = next(d for d in project["dependencies"] if d.startswith("torch"))
    assert ">=" in torch and "==" not in torch
    assert "torch==" in (REPO / "constraints.txt").read_text()
    assert "[images,mlflow,quantization,he,dev]" in (REPO / "scripts" / "setup_venv.sh").read_text()
    assert project["urls"] and project["classifiers"]


@pytest.mark.parametrize(
    "dataset, export, missing",
    [
        ("fed_isic2019", "Baseline", "efficientnet_pytorch"),
        ("fed_ixi", "FedIXITiny", "monai"),
        ("fed_lidc_idri", "preprocess", "pydicom"),
        ("fed_camelyon16", "preprocess", "tiffslide"),
        ("fed_kits19", "BaselineLoss", "nibabel"),
    ],
)
def test_an_image_dataset_without_the_images_extra_says_which_extra_to_install(dataset, export, missing):
    result = python(blocked(missing) + f"from flamby_flare.datasets.{dataset} import {export}")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("flamby_flare.errors.MissingExtraError: ")
    assert f"{dataset} needs {missing}, from flamby-flare's 'images' extra: pip install 'flamby-flare[images]'" in last


def test_the_cli_refuses_an_image_dataset_without_the_extra_in_one_line(tmp_path):
    code = blocked("monai") + (
        "from flamby_flare.cli import main\n"
        f"sys.exit(main(['preprocess', 'fed_ixi', '--data-root', {str(tmp_path)!r}]))"
    )
    result = python(code)
    assert result.returncode == 1
    assert result.stderr == (
        "error: fed_ixi needs monai, from flamby-flare's 'images' extra: pip install 'flamby-flare[images]'\n"
    )
    assert not any(tmp_path.iterdir())  # refused before anything was fetched


def test_the_tabular_datasets_train_and_their_jobs_generate_without_the_images_extra(heart_dir, tcga_dir, tmp_path):
    code = (
        blocked(*IMAGE_MODULES)
        + f"""
import torch
from flamby_flare.datasets import fed_heart_disease as heart, fed_tcga_brca as tcga
from flamby_flare.cli import main
for module, folder in ((heart, {str(heart_dir)!r}), (tcga, {str(tcga_dir)!r})):
    data = module.FedClass(center=0, train=True, data_path=folder)
    x, y = next(iter(torch.utils.data.DataLoader(data, batch_size=4)))
    module.BaselineLoss()(module.Baseline()(x), y).backward()
assert main(['jobs', '--out', {str(tmp_path)!r}, '--dataset', 'fed_ixi', 'fed_heart_disease', '--strategy', 'fedavg']) == 0
print(sorted(m for m in {IMAGE_MODULES!r} if sys.modules.get(m) is not None))
"""
    )
    result = python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fed_heart_disease_fedavg", "fed_ixi_fedavg"]


def test_version_and_python_dash_m():
    from importlib.metadata import version

    import flamby_flare

    for command in (["flamby-flare"], [sys.executable, "-m", "flamby_flare"]):
        command[0] = str(Path(sys.executable).with_name(command[0])) if command[0] == "flamby-flare" else command[0]
        result = subprocess.run(command + ["--version"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0
        assert result.stdout.startswith(
            f"flamby-flare {flamby_flare.__version__} (nvflare {version('nvflare')}, "
            f"torch {version('torch')}, opacus {version('opacus')}; python "
        )
    assert version("flamby-flare") == flamby_flare.__version__
    result = subprocess.run(
        [sys.executable, "-m", "flamby_flare", "jobs", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.startswith("usage: flamby-flare jobs")


@pytest.mark.parametrize("shadow", ["controllers/__init__.py", "executors.py", "privacy/__init__.py"])
def test_a_folder_shadowing_our_packages_is_refused_in_one_line(tmp_path, shadow):
    (tmp_path / shadow).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / shadow).write_text("X = 1\n")
    name = shadow.split("/")[0].removesuffix(".py")
    result = subprocess.run(
        [sys.executable, "-m", "flamby_flare", "--version"], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == (
        f"error: {tmp_path / shadow} shadows flamby-flare's {name!r} package ({REPO / name}): this "
        f"process would load it instead of ours; rename it, or run from another folder\n"
    )
    # The console script is not shadowed itself, but the NVFlare processes it starts from here would be.
    cli = str(Path(sys.executable).with_name("flamby-flare"))
    result = subprocess.run(
        [cli, "simulator", str(REPO / "jobs" / "fed_heart_disease_fedavg"), "-w", str(tmp_path / "ws")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 1 and result.stdout == "" and not (tmp_path / "ws").exists()
    assert result.stderr == (
        f"error: {tmp_path / shadow} shadows flamby-flare's {name!r} package ({REPO / name}): "
        f"NVFlare would load it instead of ours; rename it, or run from another folder\n"
    )


def test_a_job_carrying_a_package_of_our_name_is_refused(tmp_path):
    import shutil

    job = tmp_path / "job"
    shutil.copytree(REPO / "jobs" / "fed_heart_disease_fedavg", job)
    (job / "app" / "custom" / "controllers").mkdir(parents=True)
    (job / "app" / "custom" / "controllers" / "__init__.py").write_text("")
    cli = str(Path(sys.executable).with_name("flamby-flare"))
    result = subprocess.run(
        [cli, "simulator", str(job), "-w", str(tmp_path / "ws")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {job / 'app' / 'custom' / 'controllers' / '__init__.py'} shadows")
