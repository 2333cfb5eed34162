"""Latency, batching, autoscaling and overload of `medray serve`, on loopback.

Starts a private embedded S3 server and a local Ray, pushes an untrained
reference-architecture model (224x224 input; timings do not depend on the
weights), and sends one radiograph (../shared/data/dicom/xr_dx_chest_highdicom)
to http://127.0.0.1 only. Every phase is bounded in time and request count.

Prints:
- p50/p99 latency at concurrency 1 against a bare model forward in this process
  with the replica's torch thread count (a model replica reserves one CPU, so
  Ray gives it one thread), the two measured in turn, request after forward, so
  both see the same machine; then the median of each stage of a request (from
  the ``Server-Timing`` header, ``serve.server_timing``) and what remains for the
  HTTP proxy and the client;
- throughput batched (batch_max_size 16) against unbatched (1), concurrency 16,
  batched by medray's batcher and by Ray's ``@serve.batch`` (``serve.batcher``),
  with the images per forward of each;
- seconds until a second model replica runs under load;
- capacity: the highest request rate whose p99 stays under 1 s (and at most 1 %
  is refused) over a run of --run-s seconds (default 30), found by a search;
- at 3x capacity: the share of 503s and the p99 of accepted requests, against
  the p99 at 0.8x capacity; the wait budget (``serve.admission_wait_s``) is by
  default 1.6x the latency of one request alone, measured first.

    .venv/bin/python benchmarks/serve.py [--run-s 30]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import math
import os
import secrets
import statistics
import tempfile
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
from _store import start_private_store

from models import (
    ModelCard,
    load_model,
    make_untrained,
    predict_batch,
)
from pipelines import parse_header
from ray_cluster._internal.ray_runtime import free_loopback_port, loopback_node
from ray_cluster.config import Settings
from ray_cluster.processing import prepare_study
from ray_cluster.registry import ModelRegistry
from ray_cluster.serve.app import model_capacity
from ray_cluster.storage import ObjectStore

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "dicom"
STUDY = DATA / "xr_dx_chest_highdicom"
MAX_REQUESTS_PER_PHASE = 20000
P99_LIMIT_S = 1.0
#: Share of 503s a rate may see and still count as within capacity: with a wait
#: budget, a moment of noise on a small machine refuses a request or two.
MAX_REFUSED_AT_CAPACITY = 0.01
MAX_CAPACITY_STEPS = 8
#: ``--admission-wait-s auto``: the overload phase's wait budget, in latencies of
#: one request alone.
AUTO_BUDGET = 1.6
PHASES = ("latency", "batching", "autoscaling", "overload")
#: Stages of a predict request, in the order they happen (``ingress`` and
#: ``model`` span the ones inside them; ``model_call`` includes the model's).
STAGE_ORDER = (
    "http_and_client",
    "read",
    "split",
    "model_call",
    "prepare",
    "batch_wait",
    "forward",
    "finish",
    "model",
    "ingress",
)


@dataclass
class Run:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    seconds: float = 0.0
    stages: list[dict[str, float]] = field(default_factory=list)

    def record(self, response: httpx.Response, latency: float) -> None:
        self.add(
            response.status_code, response.headers.get("server-timing", ""), latency
        )

    def add(self, status: int, timing: str, latency: float) -> None:
        self.statuses[status] += 1
        if status != 200:
            return
        self.latencies.append(latency)
        stages = server_timing(timing)
        if "ingress" in stages:
            stages["http_and_client"] = latency - stages["ingress"]
        self.stages.append(stages)

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        return float(np.percentile(self.latencies, q))

    @property
    def refused(self) -> float:
        total = sum(self.statuses.values())
        return (total - self.statuses[200]) / total if total else 0.0

    @property
    def rate(self) -> float:
        return self.statuses[200] / self.seconds if self.seconds else 0.0


def make_model(folder: Path) -> tuple[ModelCard, Path]:
    return make_untrained(
        folder, name="bench", image_size=224, purpose="benchmark only"
    )


class BareForward:
    """The model's forward of the study's input in this process, without Serve."""

    def __init__(self, card: ModelCard, weights: Path, body: bytes) -> None:
        header = parse_header(body, key="x", total_size=len(body))
        prepared = prepare_study(header.study_uid, [("x", body)], card)
        self.inputs = next(s.inputs for s in prepared.series if s.inputs is not None)
        self.model = load_model(card, weights, torch.device("cpu"))

    def once(self, batch: int = 1) -> float:
        inputs = np.repeat(self.inputs, batch, axis=0) if batch > 1 else self.inputs
        start = time.perf_counter()
        predict_batch(self.model, inputs, torch.device("cpu"), batch_size=batch)
        return time.perf_counter() - start

    def alone(self, threads: int, count: int = 40, batch: int = 1) -> list[float]:
        """Seconds of ``count`` forwards of ``batch`` images with ``threads`` threads."""
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            for _ in range(2 if batch > 1 else 5):
                self.once(batch)
            return [self.once(batch) for _ in range(count)]
        finally:
            torch.set_num_threads(before)


def replica_threads() -> int:
    """Torch threads of the running model replica (Ray sets them from its CPUs)."""
    from ray import serve

    handle = serve.get_deployment_handle("model-bench", app_name="medray")
    return int(handle.info.remote().result(timeout_s=30)["torch_threads"])


def server_timing(header: str) -> dict[str, float]:
    stages = {}
    for item in header.split(","):
        name, _, duration = item.strip().partition(";dur=")
        if duration:
            stages[name] = float(duration) / 1000
    return stages


def alternate(
    url: str, key: str, body: bytes, bare: BareForward, threads: int, run_s: float
) -> tuple[Run, list[float], float]:
    """One request, then one bare forward, in turn: concurrency 1 against its baseline.

    Requests go over one kept-alive connection of the standard library's
    blocking client, which adds little time of its own (httpx's AsyncClient
    adds about 2 ms per request here); what it adds still counts as overhead.

    Returns the requests, the bare forwards' seconds and the median seconds of
    a ``GET /healthz`` on the same connection (HTTP and client alone).
    """
    run, forwards, pings = Run(), [], []
    headers = {"X-API-Key": key, "Content-Type": "application/dicom"}
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port, timeout=30
    )
    path = "/v1/models/bench/predict"
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    deadline = time.perf_counter() + run_s
    try:
        started = time.perf_counter()
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            conn.request("POST", path, body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            latency = time.perf_counter() - start
            run.add(response.status, response.getheader("server-timing", ""), latency)
            forwards.append(bare.once())
            start = time.perf_counter()
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            pings.append(time.perf_counter() - start)
        run.seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(before)
        conn.close()
    return run, forwards, statistics.median(pings)


def print_stages(run: Run, q: float = 50) -> None:
    """Print a percentile of each stage of the accepted requests (Server-Timing)."""
    names = [n for n in STAGE_ORDER if any(n in s for s in run.stages)]
    values = [
        f"{n} {np.percentile([s[n] for s in run.stages if n in s], q) * 1000:.1f}"
        for n in names
    ]
    print(f"  stages, p{q:g} ms: " + ", ".join(values))


async def closed_loop(
    url: str, key: str, body: bytes, clients: int, run_s: float
) -> Run:
    """``clients`` senders, each sending the next request when one returns."""
    run = Run()
    deadline = time.perf_counter() + run_s
    headers = {"X-API-Key": key, "Content-Type": "application/dicom"}
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(
        base_url=url, timeout=30, limits=limits, trust_env=False
    ) as http:

        async def sender() -> None:
            while (
                time.perf_counter() < deadline
                and sum(run.statuses.values()) < MAX_REQUESTS_PER_PHASE
            ):
                start = time.perf_counter()
                response = await http.post(
                    "/v1/models/bench/predict", content=body, headers=headers
                )
                run.record(response, time.perf_counter() - start)

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(clients)))
        run.seconds = time.perf_counter() - started
    return run


async def open_loop(url: str, key: str, body: bytes, rate: float, run_s: float) -> Run:
    """Requests at a fixed rate, whatever the answers; latency of the 200s."""
    run = Run()
    headers = {"X-API-Key": key, "Content-Type": "application/dicom"}
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
    count = min(int(rate * run_s), MAX_REQUESTS_PER_PHASE)
    async with httpx.AsyncClient(
        base_url=url, timeout=30, limits=limits, trust_env=False
    ) as http:

        async def one() -> None:
            start = time.perf_counter()
            try:
                response = await http.post(
                    "/v1/models/bench/predict", content=body, headers=headers
                )
            except httpx.HTTPError:
                run.statuses[0] += 1
                return
            run.record(response, time.perf_counter() - start)

        started = time.perf_counter()
        tasks = []
        for i in range(count):
            wait = started + i / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        run.seconds = time.perf_counter() - started
    return run


def deploy(settings: Settings, **serve: object) -> str:
    from ray_cluster.serve import deploy as serve_deploy

    options = settings.serve.model_copy(update=serve)
    deployed = serve_deploy(settings.model_copy(update={"serve": options}), ["bench"])
    wait_ready(deployed.url)
    return deployed.url


def wait_ready(url: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if (
                httpx.get(url + "/readyz", timeout=5, trust_env=False).status_code
                == 200
            ):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the service did not become ready")


def running_replicas() -> int:
    from ray import serve

    app = serve.status().applications["medray"]
    states = app.deployments["model-bench"].replica_states
    return sum(n for state, n in states.items() if state == "RUNNING")


def wait_replicas(count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and running_replicas() != count:
        time.sleep(0.5)


async def time_to_second_replica(
    url: str, key: str, body: bytes, limit_s: float
) -> float:
    """Load with 16 clients until a second replica runs; seconds, or nan."""
    found: list[float] = []
    started = time.perf_counter()

    async def watch() -> None:
        while time.perf_counter() - started < limit_s:
            if running_replicas() >= 2:
                found.append(time.perf_counter() - started)
                return
            await asyncio.sleep(0.25)

    watcher = asyncio.create_task(watch())
    load = asyncio.create_task(closed_loop(url, key, body, 16, limit_s))
    await watcher
    load.cancel()
    try:
        await load
    except asyncio.CancelledError:
        pass
    return found[0] if found else float("nan")


def find_capacity(
    url: str, key: str, body: bytes, start_rate: float, run_s: float
) -> tuple[float, Run]:
    """Raise the rate by 15 % while p99 < 1 s and at most 1 % is refused.

    A rate found over lowers the next try by 30 % until one is ok; the first
    over after an ok ends the search.
    """
    rate, best, best_run = start_rate, 0.0, Run()
    for _ in range(MAX_CAPACITY_STEPS):
        run = asyncio.run(open_loop(url, key, body, rate, run_s))
        ok = run.pct(99) < P99_LIMIT_S and run.refused <= MAX_REFUSED_AT_CAPACITY
        print(
            f"  {rate:6.1f} req/s: p99 {run.pct(99) * 1000:7.1f} ms, refused {run.refused:.1%} -> {'ok' if ok else 'over'}"
        )
        if ok:
            best, best_run = rate, run
            rate *= 1.15
        elif best == 0.0:
            rate *= 0.7
        else:
            break
    else:
        print(
            f"  (the search ended after {MAX_CAPACITY_STEPS} rates: capacity is at least this)"
        )
    return best, best_run


def latency_phase(
    settings: Settings,
    one: dict[str, int],
    key: str,
    body: bytes,
    bare: BareForward,
    phase_s: float,
) -> None:
    """Concurrency 1 against the bare forward, and the median of each stage."""
    url = deploy(settings, **one, batch_max_size=16)
    threads = replica_threads()
    own = torch.get_num_threads()
    alone = bare.alone(own)
    print(
        f"bare forward alone (1 image, 224x224, {own} threads, this process's "
        f"default): p50 {statistics.median(alone) * 1000:.1f} ms (not the baseline)"
    )
    asyncio.run(closed_loop(url, key, body, 1, 3.0))  # warm up
    single, forwards, ping = alternate(url, key, body, bare, threads, phase_s)
    bare_p50 = statistics.median(forwards)
    bare_p99 = float(np.percentile(forwards, 99))
    print(
        f"baseline: bare forward with {threads} torch thread(s) like the replica, "
        f"in turn with the requests: p50 {bare_p50 * 1000:.1f} ms, p99 {bare_p99 * 1000:.1f} ms"
    )
    print(
        f"concurrency 1: p50 {single.pct(50) * 1000:.1f} ms, p99 {single.pct(99) * 1000:.1f} ms; "
        f"overhead over the bare forward: p50 {(single.pct(50) - bare_p50) * 1000:.1f} ms, "
        f"p99 {(single.pct(99) - bare_p99) * 1000:.1f} ms ({len(single.latencies)} requests)"
    )
    less_forward = [
        latency - stages["forward"]
        for latency, stages in zip(single.latencies, single.stages, strict=True)
        if "forward" in stages
    ]
    if less_forward:
        print(
            "each request less its own forward in the replica (Server-Timing): "
            f"p50 {np.percentile(less_forward, 50) * 1000:.1f} ms, "
            f"p99 {np.percentile(less_forward, 99) * 1000:.1f} ms"
        )
    print_stages(single)
    print(
        f"  GET /healthz on the same connection (HTTP and client alone): p50 {ping * 1000:.1f} ms"
    )


def replica_batches() -> tuple[int, int]:
    """Images and forwards of the running model replica so far."""
    from ray import serve

    handle = serve.get_deployment_handle("model-bench", app_name="medray")
    info = handle.info.remote().result(timeout_s=30)
    return int(info["images"]), int(info["batches"])


def batched_run(
    settings: Settings,
    one: dict[str, int],
    key: str,
    body: bytes,
    phase_s: float,
    **serve: object,
) -> tuple[Run, float]:
    """Concurrency 16 on a fresh deployment: the run and its images per forward."""
    url = deploy(settings, **one, **serve)
    asyncio.run(closed_loop(url, key, body, 4, 2.0))  # warm up
    images, batches = replica_batches()
    run = asyncio.run(closed_loop(url, key, body, 16, phase_s))
    images_after, batches_after = replica_batches()
    per_forward = (images_after - images) / max(1, batches_after - batches)
    return run, per_forward


def batching_phase(
    settings: Settings,
    one: dict[str, int],
    key: str,
    body: bytes,
    bare: BareForward,
    phase_s: float,
) -> float:
    """Throughput at concurrency 16, batched against unbatched; the batched rate.

    Batched twice, 16 images a forward and no wait: by medray's batcher (the
    default) and by Ray's ``@serve.batch`` (``serve.batcher: ray``). Unbatched
    twice: as a deployment with ``batch_max_size`` 1 runs by default (two
    requests in the replica: one in its forward, one being prepared) and
    holding 16 requests like the batched ones, which isolates batching itself.
    The bare forward's time per image at batch 1 and 8 bounds what batching
    can gain on this machine's CPU.
    """
    runs = {
        "batched, medray's batcher": batched_run(
            settings, one, key, body, phase_s, batch_max_size=16
        ),
        "batched, Ray's @serve.batch": batched_run(
            settings, one, key, body, phase_s, batch_max_size=16, batcher="ray"
        ),
        "unbatched, 2 in the replica (its default)": batched_run(
            settings, one, key, body, phase_s, batch_max_size=1
        ),
        "unbatched, 16 in the replica": batched_run(
            settings,
            one,
            key,
            body,
            phase_s,
            batch_max_size=1,
            target_ongoing_requests=16.0,
        ),
    }
    threads = replica_threads()
    single = statistics.median(bare.alone(threads, count=10))
    eight = statistics.median(bare.alone(threads, count=3, batch=8)) / 8
    print(
        f"bare forward with {threads} torch thread(s): {single * 1000:.1f} ms an image "
        f"alone, {eight * 1000:.1f} ms an image in a batch of 8 "
        f"(x{single / eight:.2f}: batching's gain on the forward alone)"
    )
    print("concurrency 16:")
    for name, (run, per_forward) in runs.items():
        forward = [s["forward"] for s in run.stages if "forward" in s]
        print(
            f"  {name}: {run.rate:.1f} req/s, p50 {run.pct(50) * 1000:.0f} ms, "
            f"p99 {run.pct(99) * 1000:.0f} ms, {per_forward:.1f} images a forward "
            f"of p50 {statistics.median(forward or [math.nan]) * 1000:.0f} ms"
        )
    rates = {name: run.rate for name, (run, _) in runs.items()}
    for batched in ("batched, medray's batcher", "batched, Ray's @serve.batch"):
        ratios = ", ".join(
            f"x{rates[batched] / max(rates[u], 1e-9):.2f} over {u.split(', ')[1]}"
            for u in rates
            if u.startswith("unbatched")
        )
        print(f"  {batched}: {ratios}")
    return rates["batched, medray's batcher"]


def autoscaling_phase(settings: Settings, key: str, body: bytes) -> None:
    """Seconds of load (16 clients) until a second model replica runs."""
    url = deploy(
        settings,
        min_replicas=1,
        max_replicas=2,
        batch_max_size=16,
        max_queued_requests=64,
        metrics_interval_s=1.0,
        look_back_period_s=2.0,
        upscale_delay_s=1.0,
        downscale_delay_s=600.0,
    )
    wait_replicas(1, 60)
    seconds = asyncio.run(time_to_second_replica(url, key, body, 60.0))
    print(f"second replica running after {seconds:.1f} s of load (16 clients)")


def overload_phase(
    settings: Settings,
    key: str,
    body: bytes,
    batched_rate: float,
    run_s: float,
    admission_wait_s: float | str | None,
) -> None:
    """Capacity search, then 0.8x and 3x capacity.

    ``admission_wait_s`` ``"auto"`` sets the wait budget at `AUTO_BUDGET` times
    the p50 latency of one request alone, measured first on the same
    deployment without a budget: the docs' advice (a budget above the latency
    of one study at moderate load), on whatever machine this runs.
    """
    from ray_cluster.serve import shutdown

    capacity_opts: dict[str, Any] = {
        "min_replicas": 1,
        "max_replicas": 1,
        "batch_max_size": 8,
        "max_queued_requests": 4,
        "admission_wait_s": None,
    }
    shutdown()
    url = deploy(settings, **capacity_opts)
    warm = asyncio.run(closed_loop(url, key, body, 8, 5.0))
    if admission_wait_s == "auto":
        alone = asyncio.run(closed_loop(url, key, body, 1, 5.0)).pct(50)
        admission_wait_s = round(AUTO_BUDGET * alone, 3)
        print(
            f"admission_wait_s {admission_wait_s} s: {AUTO_BUDGET}x the p50 latency "
            f"of one request alone ({alone * 1000:.0f} ms)"
        )
    if admission_wait_s is not None:
        capacity_opts["admission_wait_s"] = admission_wait_s
        url = deploy(settings, **capacity_opts)
        asyncio.run(closed_loop(url, key, body, 8, 5.0))
    limit = model_capacity(settings.serve.model_copy(update=capacity_opts))
    print(
        f"capacity search ({run_s:.0f} s per rate, 1 replica, batch "
        f"{capacity_opts['batch_max_size']}, queue "
        f"{capacity_opts['max_queued_requests']}, ingress admits at most {limit}, "
        f"admission_wait_s {admission_wait_s}):"
    )
    start = 0.5 * (batched_rate or warm.rate)
    capacity, _ = find_capacity(url, key, body, start, run_s)
    print(f"capacity: {capacity:.1f} req/s")
    low = asyncio.run(open_loop(url, key, body, 0.8 * capacity, run_s))
    high = asyncio.run(open_loop(url, key, body, 3.0 * capacity, run_s))
    print(
        f"0.8x capacity ({0.8 * capacity:.1f} req/s): p99 {low.pct(99) * 1000:.0f} ms, "
        f"503s {low.statuses[503] / max(1, sum(low.statuses.values())):.1%}"
    )
    print(
        f"3x capacity ({3 * capacity:.1f} req/s): "
        f"503s {high.statuses[503] / max(1, sum(high.statuses.values())):.1%}, "
        f"accepted p99 {high.pct(99) * 1000:.0f} ms = {high.pct(99) / low.pct(99):.2f}x "
        f"the p99 at 0.8x; statuses {dict(high.statuses)}"
    )
    print_stages(low, 99)
    print_stages(high, 99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-s", type=float, default=30.0, help="Seconds per rate.")
    parser.add_argument(
        "--phase-s", type=float, default=15.0, help="Seconds per throughput run."
    )
    parser.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"Comma-separated subset of {', '.join(PHASES)}.",
    )
    parser.add_argument(
        "--ingress",
        choices=("direct", "proxy"),
        default="direct",
        help="direct: the ingress replica answers HTTP (serve.direct_ingress, the "
        "default of a local `medray serve`); proxy: through Ray's HTTP proxy, "
        "as on a cluster without direct ingress.",
    )
    parser.add_argument(
        "--admission-wait-s",
        default="auto",
        help="serve.admission_wait_s of the overload phase: seconds, 0 (unset) or "
        f"auto ({AUTO_BUDGET}x the latency of one request alone, measured first).",
    )
    args = parser.parse_args()
    if args.admission_wait_s != "auto":
        args.admission_wait_s = float(args.admission_wait_s) or None
    phases = {p.strip() for p in args.phases.split(",") if p.strip()}
    if not phases <= set(PHASES):
        parser.error(f"--phases takes {', '.join(PHASES)}")
    body = next(p for p in sorted(STUDY.iterdir()) if p.is_file()).read_bytes()
    key = secrets.token_urlsafe(24)

    import ray

    from ray_cluster.serve import direct_ingress_env, shutdown

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store_proc, settings = start_private_store(
            root,
            {
                "cluster": {"num_cpus": os.cpu_count() or 2},
                "serve": {
                    "port": free_loopback_port(),
                    "request_timeout_s": 10.0,
                    "server_timing": True,
                },
            },
        )
        print(f"ingress: {args.ingress}")
        if args.ingress == "direct":
            os.environ.update(
                direct_ingress_env(settings.serve.port, free_loopback_port())
            )
        try:
            os.environ["MEDRAY_SERVE__API_KEYS"] = key
            with loopback_node():  # a new local Ray, even if another one runs here
                ray.init(
                    address="local",
                    num_cpus=os.cpu_count() or 2,
                    include_dashboard=False,
                    log_to_driver=False,
                )
            store = ObjectStore.from_settings(settings.storage)
            card, weights = make_model(root)
            ModelRegistry(store, settings).push(card, weights)
            bare = BareForward(card, weights, body)

            one = {"min_replicas": 1, "max_replicas": 1, "max_queued_requests": 64}
            if "latency" in phases:
                latency_phase(settings, one, key, body, bare, args.phase_s)
            batched_rate = 0.0
            if "batching" in phases:
                batched_rate = batching_phase(
                    settings, one, key, body, bare, args.phase_s
                )
            if "autoscaling" in phases:
                autoscaling_phase(settings, key, body)
            if "overload" in phases:
                overload_phase(
                    settings, key, body, batched_rate, args.run_s, args.admission_wait_s
                )
        finally:
            shutdown(stop_ray=True)
            if ray.is_initialized():
                ray.shutdown()
            store_proc.stop()


if __name__ == "__main__":
    main()
