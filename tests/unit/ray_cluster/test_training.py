"""Collecting labelled samples from a folder and training the reference on it."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)

from models import reference_input_spec, sha256_file
from pipelines import assemble_study, build_input, study_key
from ray_cluster.sources import read_local_studies
from ray_cluster.training import collect_samples, train_from_folder

SIZE = 32


def _write(
    path: Path,
    *,
    modality: str,
    study_uid: str,
    series_uid: str,
    pixels: np.ndarray,
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY"),
    z: float | None = None,
) -> None:
    """Writes one small single-frame image; `z` gives it axial geometry."""
    sop_class = {
        "CT": CTImageStorage,
        "MR": MRImageStorage,
        "DX": DigitalXRayImageStorageForPresentation,
    }[modality]
    ds = Dataset()
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 1
    ds.Modality = modality
    ds.ImageType = list(image_type)
    ds.PatientID = "SYN-0"
    if z is not None:
        ds.ImagePositionPatient = [0.0, 0.0, z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [1.0, 1.0]
        ds.InstanceNumber = int(z) + 1
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)


def _pixels(rng: np.random.Generator, shape: tuple[int, int] = (24, 24)) -> np.ndarray:
    return rng.integers(0, 4000, shape)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six studies: two CT volumes (one with a localizer), two MR, two DX."""
    root = tmp_path_factory.mktemp("studies")
    rng = np.random.default_rng(0)
    for study in range(2):
        study_uid, series_uid = generate_uid(), generate_uid()
        for z in range(6):
            _write(
                root / f"ct{study}_{z}.dcm",
                modality="CT",
                study_uid=study_uid,
                series_uid=series_uid,
                pixels=_pixels(rng),
                image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
                z=float(z),
            )
        if study == 0:
            _write(
                root / "localizer.dcm",
                modality="CT",
                study_uid=study_uid,
                series_uid=generate_uid(),
                pixels=_pixels(rng, (20, 40)),
                image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
            )
        for modality in ("MR", "DX"):
            _write(
                root / f"{modality.lower()}{study}.dcm",
                modality=modality,
                study_uid=generate_uid(),
                series_uid=generate_uid(),
                pixels=_pixels(rng, (30, 20)),
            )
    return root


def test_collect_samples_labels_every_image(folder: Path) -> None:
    samples = collect_samples(
        read_local_studies(folder), reference_input_spec(SIZE), slices_per_volume=4
    )

    per_study = Counter((s.study_key, s.label) for s in samples)
    assert sorted(Counter(s.label for s in samples).items()) == [
        ("ct_axial", 8),
        ("ct_localizer", 1),
        ("mr", 2),
        ("radiograph", 2),
    ]
    assert len({s.study_key for s in samples}) == 6
    assert sorted(per_study.values()) == [1, 1, 1, 1, 1, 4, 4]
    assert all(s.image.shape == (SIZE, SIZE) for s in samples)
    assert all(s.image.dtype == np.float32 for s in samples)


def test_collect_samples_prepares_images_as_the_card_says(folder: Path) -> None:
    found = read_local_studies(folder)
    spec = reference_input_spec(SIZE)
    spec["volume"] = dict(spec["volume"], slices=4)

    samples = collect_samples(found, spec, slices_per_volume=4)

    expected = [
        (study_key(uid), image[0])
        for uid, objects in found.studies.items()
        for series in assemble_study(objects).series
        if series.kind in ("volume", "2d")
        for image in build_input(series, spec)
    ]
    assert len(samples) == len(expected)
    for sample, (key, image) in zip(samples, expected, strict=True):
        assert sample.study_key == key
        np.testing.assert_array_equal(sample.image, image)


def test_train_from_folder_writes_weights_and_card(
    folder: Path, tmp_path: Path
) -> None:
    trained = train_from_folder(
        folder, tmp_path / "model", epochs=1, image_size=SIZE, slices_per_volume=3
    )

    card = json.loads((tmp_path / "model" / "card.json").read_text(encoding="utf-8"))
    assert trained.weights_path == tmp_path / "model" / "weights.safetensors"
    assert sha256_file(trained.weights_path) == card["sha256"]
    assert card["input"] == reference_input_spec(SIZE)
    assert card["split"]["method"] == "by_study"
    assert card["split"]["train"]["studies"] + card["split"]["eval"]["studies"] == 6
    assert "eval_accuracy" in card["metrics"]


def test_train_from_folder_refuses_an_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no readable image series"):
        train_from_folder(tmp_path, tmp_path / "model", epochs=1, image_size=SIZE)
