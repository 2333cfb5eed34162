"""Throughput of `medray run` against a one-process loop, same studies and model.

Starts a private embedded S3 server, ingests the studies (default: the demo
studies; `--data DIR` for another folder such as ../shared/data/dicom), pushes
an untrained reference-architecture model (throughput does not depend on the
weights), then times:

- baseline: one process, study after study: fetch, decode, preprocess, infer;
- medray run: the Ray job (CPU actors + inference actor, batching across studies).

Prints studies/s and images/s of both and their ratio.

    .venv/bin/python benchmarks/batch.py [--data DIR] [--repeat-demo N]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch
from _store import start_private_store

from models import (
    ModelCard,
    load_model,
    make_untrained,
)
from ray_cluster._internal.ray_runtime import connect_ray
from ray_cluster.catalog import ensure_catalog
from ray_cluster.demo import build_demo_folder
from ray_cluster.ingest import ingest_folder
from ray_cluster.job import run_job
from ray_cluster.processing import finish_study, predict_study_images, prepare_study
from ray_cluster.registry import ModelRegistry
from ray_cluster.storage import ObjectStore, S3Url


def make_model(folder: Path) -> tuple[ModelCard, Path]:
    return make_untrained(
        folder, name="bench", image_size=128, purpose="benchmark only"
    )


def baseline(
    store: ObjectStore, settings, url: S3Url, card: ModelCard, weights: Path
) -> tuple[float, int, int]:
    model = load_model(card, weights, torch.device("cpu"))
    studies = ensure_catalog(store, settings, url).studies()
    images = 0
    start = time.perf_counter()
    for uid, headers in studies.items():
        objects = [(h.key, store.get(url.bucket, h.key)) for h in headers]
        prepared = prepare_study(uid, objects, card)
        probs = [
            None
            if s.inputs is None or len(s.inputs) == 0
            else predict_study_images(model, s.inputs, "cpu")
            for s in prepared.series
        ]
        finish_study(prepared, probs, card)
        images += prepared.input_count()
    return time.perf_counter() - start, len(studies), images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store_proc, settings = start_private_store(root)
        try:
            store = ObjectStore.from_settings(settings.storage)
            data = args.data or build_demo_folder(root / "demo")
            url = S3Url.parse("s3://bench/studies/")
            ingest_folder(store, data, url)
            card, weights = make_model(root)
            ModelRegistry(store, settings).push(card, weights)
            ensure_catalog(store, settings, url)

            torch.set_num_threads(os.cpu_count() or 1)
            base_s, n_studies, n_images = baseline(store, settings, url, card, weights)
            ray_start = time.perf_counter()
            connect_ray(settings)
            ray_s = time.perf_counter() - ray_start
            summary = run_job(settings, url, card.name, redo=True)
            job_s = summary.seconds
        finally:
            store_proc.stop()
    print(f"studies: {n_studies}, model images: {n_images}, cores: {os.cpu_count()}")
    print(f"{'path':<22}{'seconds':>10}{'studies/s':>12}{'images/s':>12}")
    print(
        f"{'one-process loop':<22}{base_s:>10.2f}{n_studies / base_s:>12.2f}{n_images / base_s:>12.1f}"
    )
    print(
        f"{'medray run (Ray)':<22}{job_s:>10.2f}{n_studies / job_s:>12.2f}{n_images / job_s:>12.1f}"
    )
    steady_s = job_s - summary.startup_seconds
    print(
        f"{'  after actors were up':<22}{steady_s:>10.2f}{n_studies / steady_s:>12.2f}{n_images / steady_s:>12.1f}"
    )
    print(f"ratio medray/loop (throughput, whole job): {base_s / job_s:.2f}x")
    print(
        f"ratio medray/loop (throughput, after actor start-up): {base_s / steady_s:.2f}x"
    )
    print(
        f"job: {summary.studies_ok} ok, {summary.studies_failed} failed; actor start-up "
        f"and model load {summary.startup_seconds:.1f} s; Ray start-up {ray_s:.1f} s "
        "(not in either figure)"
    )


if __name__ == "__main__":
    main()
