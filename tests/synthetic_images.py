"""Small synthetic Fed-IXI and Fed-ISIC2019 raw files in their real on-disk formats (NIfTI in the IXI-Tiny zip
layout, JPEGs in the ISIC 2019 zip with its CSVs), beside the real metadata files of the team mirror, so the
real download, preprocessing and loading code runs on them."""

from __future__ import annotations

import gzip
import io
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

IXI_CENTERS = ("Guys", "HH", "IOP")


def ixi_subjects(real_mirror: Path, per_center: tuple[int, int] = (2, 1)) -> dict[int, tuple[str, str]]:
    """Patient id -> (center, split): the first ``per_center`` (train, test) subjects of each center in FLamby's
    ``metadata_tiny.csv`` (its Manufacturer column is the center)."""
    meta = pd.read_csv(real_mirror / "fed_ixi" / "metadata_tiny.csv")
    chosen = {}
    for center, name in enumerate(IXI_CENTERS):
        for split, n in zip(("train", "test"), per_center):
            rows = meta[(meta["Manufacturer"] == center) & (meta["Split"] == split)].head(n)
            chosen.update({int(pid): (name, split) for pid in rows["Patient ID"]})
    return chosen


def write_ixi_archive(
    path: Path, subjects: dict[int, tuple[str, str]], shape=(83, 44, 55), seed: int = 0, wrap: bool = True
) -> None:
    """IXI-Tiny's zip (``IXI_sample/IXI<id>-<Center>-<n>/{T1,label}/*.nii.gz``), wrapped in an outer zip as
    Mendeley serves it: per subject a bright ellipsoid 'brain' on noise, and its mask as the label."""
    import nibabel

    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        for pid, (center, _) in subjects.items():
            mask = ((grid**2).sum(0) < rng.uniform(0.5, 0.8) ** 2).astype(np.uint8)
            t1 = (100 * mask + rng.normal(20, 5, shape)).astype(np.float32)
            stem = f"IXI{pid:03d}-{center}-{1000 + pid}"
            for kind, volume, suffix in (("T1", t1, "image"), ("label", mask, "label")):
                data = gzip.compress(nibabel.Nifti1Image(volume, np.eye(4)).to_bytes())
                archive.writestr(f"IXI_sample/{stem}/{kind}/{stem}_{suffix}.nii.gz", data)
    if not wrap:
        path.write_bytes(inner.getvalue())
        return
    with zipfile.ZipFile(path, "w") as outer:
        outer.writestr("IXI Tiny.zip", inner.getvalue())


def write_ixi_mirror(
    mirror: Path, real_mirror: Path, per_center: tuple[int, int] = (2, 1)
) -> dict[int, tuple[str, str]]:
    """``mirror/fed_ixi/``: a synthetic archive and the real ``metadata_tiny.csv``; returns the subjects."""
    folder = mirror / "fed_ixi"
    folder.mkdir(parents=True, exist_ok=True)
    subjects = ixi_subjects(real_mirror, per_center)
    write_ixi_archive(folder / "7kd5wj7v7p-3.zip", subjects)
    shutil.copyfile(real_mirror / "fed_ixi" / "metadata_tiny.csv", folder / "metadata_tiny.csv")
    return subjects


ISIC_CLASSES = ("MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK")


def isic_images(real_mirror: Path, per_center: tuple[int, int] = (3, 2)) -> pd.DataFrame:
    """The first ``per_center`` (train, test) images of each center in FLamby's split file."""
    split = pd.read_csv(real_mirror / "fed_isic2019" / "train_test_split.csv")
    parts = [
        split[(split["center"] == c) & (split["fold"] == f)].head(n)
        for c in range(6)
        for f, n in zip(("train", "test"), per_center)
    ]
    return pd.concat(parts, ignore_index=True)


def write_isic_mirror(
    mirror: Path, real_mirror: Path, per_center: tuple[int, int] = (3, 2), seed: int = 0
) -> pd.DataFrame:
    """``mirror/fed_isic2019/``: ISIC 2019's metadata and ground-truth CSVs for every image of FLamby's split
    (lesion ids as ISIC's: HAM's from HAM10000, BCN_/MSK ids otherwise; plus images without a lesion id), a
    training archive holding JPEGs of ``per_center`` images per center, and FLamby's two real files.
    Returns the images in the archive."""
    real = real_mirror / "fed_isic2019"
    folder = mirror / "fed_isic2019"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("HAM10000_metadata.csv", "train_test_split.csv"):
        shutil.copyfile(real / name, folder / name)
    split = pd.read_csv(real / "train_test_split.csv")
    ham = pd.read_csv(real / "HAM10000_metadata.csv").set_index("image_id")["lesion_id"]
    prefix = split["center"].map({0: "BCN_", 4: "MSK4_"})
    lesion = [
        ham.get(image) if pd.isna(p) else f"{p}{i:07d}" for i, (image, p) in enumerate(zip(split["image"], prefix))
    ]
    extra = [f"ISIC_99999{i:02d}" for i in range(3)]  # no lesion id: FLamby drops them
    pd.DataFrame(
        {
            "image": list(split["image"]) + extra,
            "age_approx": 50,
            "anatom_site_general": "back",
            "lesion_id": lesion + [None] * 3,
            "sex": "female",
        }
    ).to_csv(folder / "ISIC_2019_Training_Metadata.csv", index=False)
    onehot = np.zeros((len(split) + 3, len(ISIC_CLASSES)))
    onehot[np.arange(len(split)), split["target"]] = 1.0
    onehot[len(split) :, 1] = 1.0
    truth = pd.DataFrame(onehot, columns=ISIC_CLASSES)
    truth.insert(0, "image", list(split["image"]) + extra)
    truth.to_csv(folder / "ISIC_2019_Training_GroundTruth.csv", index=False)
    chosen = isic_images(real_mirror, per_center)
    write_isic_archive(folder / "ISIC_2019_Training_Input.zip", list(chosen["image"]) + extra, seed)
    return chosen


def write_isic_archive(path: Path, images: list[str], seed: int = 0) -> None:
    """``ISIC_2019_Training_Input/<image>.jpg`` (landscape and portrait sizes: a dark lesion on a tinted skin)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("ISIC_2019_Training_Input/LICENSE.txt", "CC BY-NC 4.0\n")
        for i, image in enumerate(images):
            width, height = (300, 250) if i % 2 == 0 else (260, 340)
            yy, xx = np.mgrid[0:height, 0:width]
            skin = np.array([200, 150, 130]) * rng.uniform(0.8, 1.1, 3)
            lesion = ((yy - height / 2) ** 2 + (xx - width / 2) ** 2) < (min(width, height) / 4) ** 2
            pixels = np.where(lesion[..., None], skin * 0.4, skin) + rng.normal(0, 8, (height, width, 3))
            buffer = io.BytesIO()
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, format="JPEG", quality=92)
            archive.writestr(f"ISIC_2019_Training_Input/{image}.jpg", buffer.getvalue())


def write_kits_mirror(
    mirror: Path, real_mirror: Path, shape=(12, 40, 40), zooms=(5.8, 2.9, 2.9), seed: int = 0
) -> None:
    """``mirror/fed_kits19/``: FLamby's two site files and, for each of their 96 cases, KiTS19's
    ``case_XXXXX/{imaging,segmentation}.nii.gz``: a body (0 HU) in air (-1000 HU) holding a kidney (label 1,
    about 150 HU) with a tumor (label 2, about 60 HU) at a random place; voxel sizes ``zooms`` (z, y, x) mm."""
    import nibabel

    folder = mirror / "fed_kits19"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("thresholded_sites.csv", "anony_sites.csv"):
        shutil.copyfile(real_mirror / "fed_kits19" / name, folder / name)
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")).astype(float)
    size = np.array(shape, float)
    for case in pd.read_csv(folder / "thresholded_sites.csv")["case_ids"]:
        center = size * rng.uniform(0.35, 0.65, 3)
        kidney = (((grid - center[:, None, None, None]) / (size[:, None, None, None] * 0.2)) ** 2).sum(0) < 1
        tumor = kidney & ((((grid - center[:, None, None, None]) / (size[:, None, None, None] * 0.08)) ** 2).sum(0) < 1)
        body = (((grid - size[:, None, None, None] / 2) / (size[:, None, None, None] * 0.45)) ** 2).sum(0) < 1
        ct = np.where(body, 0.0, -1000.0) + 150.0 * kidney - 90.0 * tumor + rng.normal(0, 20, shape)
        seg = kidney.astype(np.uint8) + tumor.astype(np.uint8)
        affine = np.diag([*zooms, 1.0])
        (folder / case).mkdir(exist_ok=True)
        nibabel.save(nibabel.Nifti1Image(ct.astype(np.int16), affine), folder / case / "imaging.nii.gz")
        nibabel.save(nibabel.Nifti1Image(seg, affine), folder / case / "segmentation.nii.gz")


LIDC_NS = "http://www.nih.gov"


def write_dicom_series(path: Path, uid: str, hu: np.ndarray, spacing=(2.5, 0.7, 0.7), seed: int = 0) -> list[str]:
    """A zip of one CT series (one DICOM file per slice, written in shuffled order), as TCIA serves it;
    ``hu`` is (z, y, x); stored as uint16 with RescaleIntercept -1024. Returns the slices' SOP instance UIDs."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    sops = [generate_uid() for _ in range(len(hu))]
    order = np.random.default_rng(seed).permutation(len(hu))
    with zipfile.ZipFile(path, "w") as archive:
        for k in order:
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, sops[k]
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = Dataset()
            ds.file_meta = meta
            ds.SOPClassUID, ds.SOPInstanceUID, ds.SeriesInstanceUID, ds.Modality = CTImageStorage, sops[k], uid, "CT"
            ds.Rows, ds.Columns = hu.shape[1:]
            ds.PixelSpacing = [spacing[1], spacing[2]]
            ds.SliceThickness = spacing[0]
            ds.ImagePositionPatient = [0.0, 0.0, -100.0 + spacing[0] * k]
            ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]  # axial, as LIDC's (FLamby's reader needs it)
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
            ds.PixelData = np.clip(hu[k] + 1024, 0, 65535).astype(np.uint16).tobytes()
            buffer = io.BytesIO()
            pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
            archive.writestr(f"{uid}/1-{k + 1:03d}.dcm", buffer.getvalue())
    return sops


def lidc_xml(uid: str, readers: list[list[list[tuple[str, float, bool, list[tuple[int, int]]]]]]) -> str:
    """An annotation file in LIDC's schema: per reader, per nodule, the contours (SOP UID, z, inclusion, points)."""
    sessions = []
    for r, nodules in enumerate(readers):
        parts = []
        for n, contours in enumerate(nodules):
            rois = "".join(
                f"<roi><imageZposition>{z:.6f}</imageZposition><imageSOP_UID>{sop}</imageSOP_UID>"
                f"<inclusion>{'TRUE' if inclusion else 'FALSE'}</inclusion>"
                + "".join(f"<edgeMap><xCoord>{x}</xCoord><yCoord>{y}</yCoord></edgeMap>" for x, y in points)
                + "</roi>"
                for sop, z, inclusion, points in contours
            )
            parts.append(f"<unblindedReadNodule><noduleID>Nodule {n + 1:03d}</noduleID>{rois}</unblindedReadNodule>")
        sessions.append(
            f"<readingSession><annotationVersion>3.12</annotationVersion><servicingRadiologistID>{r}"
            f"</servicingRadiologistID>{''.join(parts)}</readingSession>"
        )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><LidcReadMessage xmlns="{LIDC_NS}" uid="1.3.6.1.4.1.14519.5.2.1.6279.6001">'
        f"<ResponseHeader><Version>1.8.1</Version><SeriesInstanceUid>{uid}</SeriesInstanceUid></ResponseHeader>"
        f"{''.join(sessions)}</LidcReadMessage>"
    )


def octagon(cx: int, cy: int, r: int) -> list[tuple[int, int]]:
    return [
        (int(round(cx + r * np.cos(a))), int(round(cy + r * np.sin(a))))
        for a in np.linspace(0, 2 * np.pi, 8, endpoint=False)
    ]


def write_lidc_mirror(mirror: Path, real_mirror: Path, shape=(8, 24, 24), seed: int = 0) -> None:
    """``mirror/fed_lidc_idri/``: FLamby's metadata file, a zipped DICOM series for each of its 1018 series
    (a body of soft tissue in air with a 60 HU nodule) and LIDC-XML-only.zip with two readers' contours of
    the nodule per series (the second reader's slightly larger)."""
    folder = mirror / "fed_lidc_idri"
    (folder / "series").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(real_mirror / "fed_lidc_idri" / "metadata.csv", folder / "metadata.csv")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : shape[1], 0 : shape[2]]
    body = ((yy - shape[1] / 2) ** 2 + (xx - shape[2] / 2) ** 2) < (0.45 * shape[1]) ** 2
    with zipfile.ZipFile(folder / "LIDC-XML-only.zip", "w") as xml_zip:
        for k, uid in enumerate(pd.read_csv(folder / "metadata.csv")["SeriesInstanceUID"]):
            cy, cx = (int(v) for v in rng.integers(9, shape[1] - 9, 2))
            hu = np.where(body, 40.0, -1000.0)[None].repeat(shape[0], 0) + rng.normal(0, 10, shape)
            nodule = ((yy - cy) ** 2 + (xx - cx) ** 2) <= 9
            hu[3:6][:, nodule] = 60.0
            sops = write_dicom_series(folder / "series" / f"{uid}.zip", uid, hu, seed=k)
            readers = [[[(sops[z], -100.0 + 2.5 * z, True, octagon(cx, cy, r)) for z in (3, 4, 5)]] for r in (3, 4)]
            xml_zip.writestr(f"tcia-lidc-xml/{k // 100}/{k:04d}.xml", lidc_xml(uid, readers))


def write_slide(
    path: Path, size: int = 1024, tissue: tuple[int, int, int, int] | None = (0, 0, 448, 448), seed: int = 0
) -> None:
    """A pyramidal tiled TIFF (JPEG tiles of 256, levels 1/2/4/8 as SubIFDs, 0.243 um per pixel, as the
    Camelyon16 slides): white glass with a pink-purple 'tissue' rectangle (x0, y0, x1, y1) at level 0."""
    import tifffile

    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 235, np.uint8)
    if tissue is not None:
        x0, y0, x1, y1 = tissue
        patch = np.array([175, 95, 165]) + rng.normal(0, 12, (y1 - y0, x1 - x0, 3))
        image[y0:y1, x0:x1] = np.clip(patch, 0, 255).astype(np.uint8)
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        options = {"tile": (256, 256), "compression": "jpeg", "photometric": "rgb"}
        tif.write(image, subifds=3, resolution=(1e4 / 0.243, 1e4 / 0.243), resolutionunit="CENTIMETER", **options)
        for level in (1, 2, 3):
            tif.write(image[:: 2**level, :: 2**level], subfiletype=1, **options)


CAMELYON_TISSUE_EVERY = 4  # slide k has tissue when k % 4 == 0; the others are bare glass (no tile, no ResNet50 pass)


def write_camelyon_mirror(mirror: Path, real_mirror: Path) -> None:
    """``mirror/fed_camelyon16/``: FLamby's three metadata files and, for each of its 399 slides, a small
    pyramidal slide (1024^2 at level 0): one slide in ``CAMELYON_TISSUE_EVERY`` has tissue covering one
    level-1 tile (its position varies), the others only glass, so that the suite's preprocessing runs 100
    ResNet50 passes on one core, not 399, and slides without a tile go through the whole pipeline."""
    folder = mirror / "fed_camelyon16"
    (folder / "slides").mkdir(parents=True, exist_ok=True)
    for name in ("metadata.csv", "labels.csv", "reference.csv"):
        shutil.copyfile(real_mirror / "fed_camelyon16" / name, folder / name)
    for k, name in enumerate(pd.read_csv(folder / "metadata.csv")["slide_name"]):
        j = k // CAMELYON_TISSUE_EVERY
        x0, y0 = 448 * (j % 2), 448 * ((j // 2) % 2)
        tissue = (x0, y0, x0 + 448, y0 + 448) if k % CAMELYON_TISSUE_EVERY == 0 else None
        write_slide(folder / "slides" / name, tissue=tissue, seed=k)
