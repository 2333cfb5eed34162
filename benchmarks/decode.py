"""Decode throughput per transfer syntax over the shared DICOM corpus.

Runs in one process (one core): for every object, read + decode is repeated
for at least ``--min-time`` seconds, and results are grouped by transfer
syntax. Prints a table of images (frames) per second per core.

Usage::

    .venv/bin/python benchmarks/decode.py [--data ../shared/data/dicom]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from pydicom.uid import UID

from pipelines import NotDicomError, decode_instance, read_instance
from pipelines.errors import InvalidStudyError

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dicom"


@dataclass
class Tally:
    files: int = 0
    frames: int = 0
    pixels: int = 0
    seconds: float = 0.0


def _time_one(data: bytes, key: str, min_time: float) -> tuple[str, int, int, float]:
    """Return (syntax, frames, pixels, seconds per decode) for one object."""
    runs = 0
    start = time.perf_counter()
    while True:
        ds = read_instance(data, key=key)
        decoded = decode_instance(ds, key=key)
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            break
    frames = decoded.array.shape[0]
    pixels = int(decoded.array.size)
    return decoded.transfer_syntax, frames, pixels, elapsed / runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--min-time", type=float, default=0.05)
    args = parser.parse_args()
    if not args.data.is_dir():
        parser.error(f"corpus not found at {args.data}")

    tallies: dict[str, Tally] = defaultdict(Tally)
    skipped = 0
    for path in sorted(args.data.rglob("*")):
        if not path.is_file() or "LICENSES" in path.parts or path.suffix == ".md":
            continue
        try:
            syntax, frames, pixels, seconds = _time_one(
                path.read_bytes(), str(path), args.min_time
            )
        except (NotDicomError, InvalidStudyError):
            skipped += 1
            continue
        tally = tallies[syntax]
        tally.files += 1
        tally.frames += frames
        tally.pixels += pixels
        tally.seconds += seconds

    header = f"{'transfer syntax':<36} {'files':>5} {'frames':>6} {'img/s/core':>10} "
    header += f"{'Mpx/s/core':>10}"
    print(header)
    print("-" * len(header))
    for syntax, t in sorted(tallies.items(), key=lambda kv: UID(kv[0]).name):
        name = UID(syntax).name[:36]
        print(
            f"{name:<36} {t.files:>5} {t.frames:>6} {t.frames / t.seconds:>10.1f} "
            f"{t.pixels / t.seconds / 1e6:>10.1f}"
        )
    print(f"(skipped {skipped} objects without decodable pixels)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
