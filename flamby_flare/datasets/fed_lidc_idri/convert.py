"""LIDC-IDRI's raw formats to arrays (reference §1.2, FLamby's ``process_raw.py``), with pydicom and Pillow.

- A CT series (a zip of DICOM files, as TCIA serves it) becomes a (z, y, x) volume in Hounsfield units:
  slices ordered by ImagePositionPatient z, ``pixel * RescaleSlope + RescaleIntercept``, with FLamby's
  intensity correction (``corrected_intensity``); voxel sizes (slice step, PixelSpacing row, column). A series
  with missing slices (a slice step more than 10% off the first: dicom_numpy's test in FLamby's conversion) is
  refused, as FLamby leaves it out (9 scans of LIDC-IDRI).
- The LIDC XML (``LidcReadMessage``) of the series gives each reader's nodules as per-slice contours
  (``roi``: ``imageSOP_UID``, ``imageZposition``, ``inclusion``, ``edgeMap`` points in pixel columns/rows).
  Each contour is filled with its boundary (inclusion TRUE adds, FALSE removes) on its slice, found by SOP
  instance UID (else the nearest z); a reader's mask is the union of its nodules, and the consensus mask the
  union of all readers' (FLamby's ``mask_consensus``).
"""

from __future__ import annotations

import io
import os
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Series:
    volume: np.ndarray  # (z, y, x) int16 HU
    spacing: tuple[float, float, float]  # mm, (z, y, x)
    sop_uids: list[str]
    z_positions: np.ndarray
    uid: str


@dataclass
class Contour:
    sop_uid: str
    z: float
    inclusion: bool
    points: list[tuple[int, int]]  # (x = column, y = row)


@dataclass
class Reading:
    """One reader's nodules: contours grouped by nodule."""

    nodules: list[list[Contour]] = field(default_factory=list)


def verify_raw_file(name: str, path: str | os.PathLike) -> None:
    """Raise ValueError unless ``path`` has the layout of LIDC-IDRI's file ``name``."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if name.startswith("series/"):
                dicoms = [n for n in names if not n.endswith("/") and not n.lower().endswith((".xml", ".txt", ".json"))]
                if not dicoms:
                    raise ValueError("holds no DICOM file")
                import pydicom

                header = pydicom.dcmread(io.BytesIO(archive.read(dicoms[0])), stop_before_pixels=True)
                uid = name[len("series/") : -len(".zip")]
                if str(header.SeriesInstanceUID) != uid:
                    raise ValueError(f"its DICOM files belong to series {header.SeriesInstanceUID}, not {uid}")
            elif not any(n.lower().endswith(".xml") for n in names):
                raise ValueError("holds no LIDC XML annotation file")
    except zipfile.BadZipFile as exc:
        raise ValueError(f"not a zip archive ({exc})") from None


def corrected_intensity(hu: np.ndarray) -> np.ndarray:
    """FLamby's correction of a CT volume in HU: clipped below at -1024; a volume with no value below -1 (stored
    unsigned without its intercept) and then one whose mean is above -50 HU (no plausible CT: mostly air reads
    near -1000) are shifted by -1024, then clipped below at -1024."""
    if hu.min() < -1:
        hu = np.maximum(hu, -1024)
    if hu.min() > -1:
        hu = hu - 1024
    if hu.mean(dtype=np.float64) > -50:
        hu = np.maximum(hu - 1024, -1024)
    return hu


def read_series(path: str | os.PathLike) -> Series:
    """The CT volume of a zipped DICOM series."""
    import pydicom

    slices = []
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.endswith("/") or name.lower().endswith((".xml", ".txt", ".json")):
                continue
            ds = pydicom.dcmread(io.BytesIO(archive.read(name)))
            if "PixelData" in ds:
                slices.append(ds)
    if len(slices) < 2:
        raise ValueError(f"{len(slices)} image slice(s): not a CT volume")
    slices.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
    z = np.array([float(ds.ImagePositionPatient[2]) for ds in slices])
    steps = np.diff(z)
    if (steps <= 0).any():
        raise ValueError("slices share a z position")
    if not np.allclose(steps, steps[0], rtol=0.1, atol=0):  # dicom_numpy's test, which FLamby's conversion uses
        raise ValueError(f"missing slices: slice steps from {steps.min():.3g} to {steps.max():.3g} mm")
    hu = np.stack(
        [
            ds.pixel_array.astype(np.float32) * float(getattr(ds, "RescaleSlope", 1))
            + float(getattr(ds, "RescaleIntercept", 0))
            for ds in slices
        ]
    )
    volume = corrected_intensity(hu).astype(np.int16)
    row, col = (float(v) for v in slices[0].PixelSpacing)
    return Series(
        volume,
        (float(np.median(steps)), row, col),
        [str(ds.SOPInstanceUID) for ds in slices],
        z,
        str(slices[0].SeriesInstanceUID),
    )


def _text(element, tag: str, ns: str) -> str | None:
    child = element.find(f"{ns}{tag}")
    return child.text.strip() if child is not None and child.text else None


def parse_annotations(xml: bytes) -> tuple[str | None, list[Reading]]:
    """(SeriesInstanceUID, the readings) of one LIDC XML file."""
    root = ET.fromstring(xml)
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    header = root.find(f"{ns}ResponseHeader")
    uid = None
    if header is not None:
        uid = _text(header, "SeriesInstanceUid", ns) or _text(header, "SeriesInstanceUID", ns)
    readings = []
    for session in root.iter(f"{ns}readingSession"):
        reading = Reading()
        for nodule in session.iter(f"{ns}unblindedReadNodule"):
            contours = []
            for roi in nodule.iter(f"{ns}roi"):
                points = [
                    (int(float(_text(e, "xCoord", ns))), int(float(_text(e, "yCoord", ns))))
                    for e in roi.iter(f"{ns}edgeMap")
                ]
                if points:
                    contours.append(
                        Contour(
                            _text(roi, "imageSOP_UID", ns) or "",
                            float(_text(roi, "imageZposition", ns) or "nan"),
                            (_text(roi, "inclusion", ns) or "TRUE").upper() == "TRUE",
                            points,
                        )
                    )
            if contours:
                reading.nodules.append(contours)
        readings.append(reading)
    return uid, readings


def annotations_by_series(archive_path: str | os.PathLike) -> dict[str, bytes]:
    """SeriesInstanceUID -> its LIDC XML, for every XML file of the annotation archive."""
    found = {}
    with zipfile.ZipFile(archive_path) as archive:
        for name in archive.namelist():
            if name.lower().endswith(".xml"):
                data = archive.read(name)
                try:
                    uid, _ = parse_annotations(data)
                except ET.ParseError:
                    continue
                if uid:
                    found[uid] = data
    return found


def _slice_index(series: Series, contour: Contour) -> int | None:
    if contour.sop_uid in series.sop_uids:
        return series.sop_uids.index(contour.sop_uid)
    nearest = int(np.argmin(np.abs(series.z_positions - contour.z)))
    return nearest if abs(series.z_positions[nearest] - contour.z) <= series.spacing[0] / 2 else None


def rasterize(series: Series, contours: list[Contour]) -> np.ndarray:
    """One nodule's mask: each contour filled (boundary included) on its slice; exclusions removed."""
    from PIL import Image, ImageDraw

    depth, height, width = series.volume.shape
    mask = np.zeros((depth, height, width), np.uint8)
    for inclusion in (True, False):  # inclusions first, then the holes
        for contour in (c for c in contours if c.inclusion == inclusion):
            index = _slice_index(series, contour)
            if index is None:
                continue
            canvas = Image.new("L", (width, height), 0)
            draw = ImageDraw.Draw(canvas)
            if len(contour.points) >= 3:
                draw.polygon(contour.points, fill=1, outline=1)
            else:
                draw.point(contour.points, fill=1)
            filled = np.asarray(canvas, dtype=bool)
            if inclusion:
                mask[index][filled] = 1
            else:
                mask[index][filled] = 0
    return mask


def consensus_mask(series: Series, readings: list[Reading]) -> np.ndarray:
    """The union of every reader's nodules (FLamby's ``mask_consensus``)."""
    mask = np.zeros(series.volume.shape, np.uint8)
    for reading in readings:
        for nodule in reading.nodules:
            mask |= rasterize(series, nodule)
    return mask
