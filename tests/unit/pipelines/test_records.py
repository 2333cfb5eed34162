"""InstanceHeader rows, study/series keys, and the error tree."""

from __future__ import annotations

import dataclasses
import hashlib
import pickle

import pyarrow as pa
import pytest
from pipelines_synth import STUDY_UID, ct_slice, to_bytes

from pipelines import (
    DecodeBudgetError,
    InstanceHeader,
    InvalidStudyError,
    MissingTagError,
    NeedMoreBytes,
    NotDicomError,
    PipelineError,
    TruncatedError,
    UndecodableError,
    parse_header,
    series_key,
    study_key,
)

_FORBIDDEN = ("patient", "birth", "sex", "age", "accession", "date", "time",
              "description", "name", "comment", "institution", "physician")  # fmt: skip


def test_study_key_is_sha256_prefix() -> None:
    expected = hashlib.sha256(STUDY_UID.encode()).hexdigest()[:16]
    assert study_key(STUDY_UID) == expected
    assert series_key(STUDY_UID) == expected
    assert len(expected) == 16


def _header() -> InstanceHeader:
    data = to_bytes(ct_slice(3.0, instance_number=7, thickness=5.0))
    return parse_header(data, key="s3://bucket/a/1.dcm", total_size=len(data))


def test_header_has_no_patient_fields() -> None:
    header = _header()
    names = [f.name for f in dataclasses.fields(header)] + list(header.to_row())
    for name in names:
        assert not set(name.lower().split("_")) & set(_FORBIDDEN), name
    assert "Synthetic" not in repr(header.to_row())


def test_row_round_trip_through_parquet_table() -> None:
    header = _header()
    table = pa.Table.from_pylist([header.to_row(), header.to_row()])

    back = InstanceHeader.from_row(table.to_pylist()[0])

    assert back == header
    assert table.column("study_key")[0].as_py() == study_key(STUDY_UID)
    assert back.position == (0.0, 0.0, 3.0)
    assert back.instance_number == 7
    assert back.slice_thickness == 5.0


def test_header_estimated_size() -> None:
    assert _header().estimated_decoded_bytes() == 8 * 8 * 4


@pytest.mark.parametrize(
    "cls",
    [
        MissingTagError,
        UndecodableError,
        TruncatedError,
        DecodeBudgetError,
        NotDicomError,
    ],
)
def test_errors_tree_and_pickle(cls: type[InvalidStudyError]) -> None:
    error = cls("k: broken", key="s3://b/k", code="some_code")
    assert isinstance(error, InvalidStudyError)
    assert isinstance(error, PipelineError)
    assert isinstance(error, ValueError)

    back = pickle.loads(pickle.dumps(error))

    assert type(back) is cls
    assert (back.message, back.key, back.code) == ("k: broken", "s3://b/k", "some_code")
    assert str(back) == "k: broken"


def test_default_codes_and_need_more_bytes_pickle() -> None:
    assert TruncatedError("x").code == "truncated"
    assert DecodeBudgetError("x").code == "decode_budget_exceeded"
    need = NeedMoreBytes("more", wanted=131072, key="k")
    back = pickle.loads(pickle.dumps(need))
    assert (back.wanted, back.key, back.code) == (131072, "k", "need_more_bytes")
    assert not isinstance(need, InvalidStudyError)
