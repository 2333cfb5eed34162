"""Log records carry job and study context and never quoted header values."""

from __future__ import annotations

import json
import logging
import warnings

import pytest

from ray_cluster.log import configure_logging, log_context


@pytest.fixture(autouse=True)
def _reset_logging() -> None:
    yield
    for name in ("ray_cluster", "pipelines", "models", "py.warnings"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if not isinstance(handler, logging.NullHandler):
                logger.removeHandler(handler)
        logger.propagate = True
    logging.captureWarnings(False)


def test_json_records_carry_context(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    with log_context(job_id="job-1", study_key="abcd1234abcd1234"):
        logging.getLogger("ray_cluster.job").info("study done: %d series", 2)
    record = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert record["job_id"] == "job-1"
    assert record["study_key"] == "abcd1234abcd1234"
    assert record["msg"] == "study done: 2 series"


def test_context_is_left_after_the_block(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    with log_context(job_id="job-2"):
        pass
    logging.getLogger("ray_cluster.job").info("outside")
    record = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert "job_id" not in record


def test_third_party_warning_values_are_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("WARNING")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("Invalid value for VR PN: 'DOE^JOHN'", UserWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert "DOE" not in err
    assert "Invalid value for VR PN" in err
