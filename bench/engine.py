"""Engine benchmark: one M/M/4 queue on our kernel and on SimPy, in the same run.

Covers: the speed of ``patterns.engine.kernel`` against SimPy, the reference model and
correctness oracle (DESIGN.md §4, "The kernel"), at three tiers of our engine:

1. ``callbacks``: the kernel with plain callbacks, written the way our components are
   (``patterns/components/service.py``: a busy count, a FIFO deque, ``kernel.schedule``);
2. ``processes``: the kernel with generator processes in SimPy's style: one process per
   request, a :class:`~patterns.engine.kernel.Resource` for the servers;
3. ``stack``: the full component stack, a ``client`` → ``service`` topology built with
   :func:`patterns.run.prepare` and :func:`patterns.run.simulate` (trace ``off``, edge latency
   0), timed from building the simulation to the end of its run; its open-loop client sends
   for ``requests / rate`` seconds, so it serves 200,000 requests on average, not exactly;

and ``simpy``: the canonical SimPy model, one process per request with ``simpy.Resource``.

Scenario: M/M/4, ρ = 0.9: Poisson arrivals at λ = 0.9 · 4 · μ, exponential service times of
mean 1/μ = 20 ms, 4 servers, FIFO, an unbounded queue, 200,000 requests, run until the last
one has left.

What is counted: **events/s = 3 model events per request (arrival, service start, departure)
× requests completed / wall seconds**, the same count for every engine whatever it puts on its
own agenda to get there (SimPy needs about 6 internal events per request). ``requests/s`` is
shown too. Wall time is measured with ``time.perf_counter``; each configuration runs
``--repeats`` times (5), interleaved in a rotating order, and the table shows the medians.
Round ``r`` uses seed ``SEED + r`` for every configuration, so all do the same work in a round.

Checks (the run fails when one does not hold): tiers 1, 2 and SimPy draw from the same two
seeded streams (inter-arrival times in arrival order, service times in service-start order,
which FIFO makes the same order), so in each round they simulate the same sample path and
their mean latencies must agree to 1e-9; the stack draws from its nodes' own streams, so it
is another sample of the same model. Each configuration's mean latency, averaged over the
rounds, must agree with Erlang C within a tolerance that suits the sample size (the seeds are
fixed, so the check is deterministic).

Usage: ``python bench/engine.py [--quick] [--requests N] [--repeats R] [--json PATH]``. Writes
``bench/results/engine.json`` (git-ignored) unless ``--json`` says otherwise.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import random
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import simpy  # noqa: E402

from patterns.engine.kernel import Kernel, Resource  # noqa: E402
from patterns.engine.randomness import stream  # noqa: E402
from patterns.engine.theory import erlang_c_mean_latency  # noqa: E402
from patterns.run import prepare, simulate  # noqa: E402

SERVERS = 4  # c
RHO = 0.9  # utilisation per server
SERVICE_MS = 20.0  # mean service time 1/μ, in ms
MU = 1.0 / SERVICE_MS  # service rate per ms
LAM = RHO * SERVERS * MU  # arrival rate per ms (0.18/ms = 180 req/s)
REQUESTS = 200_000  # requests per run
REPEATS = 5  # runs per configuration; the table shows medians
QUICK_REQUESTS = 20_000  # --quick: a smoke run
SEED = 2024  # round r runs every configuration with seed SEED + r
EVENTS_PER_REQUEST = 3  # arrival, service start, departure
SAME_PATH_REL = 1e-9  # tiers that share a sample path must agree this closely
RESULTS = ROOT / "bench" / "results" / "engine.json"


def erlang_tolerance(requests: int) -> float:
    """Relative tolerance against Erlang C of a mean latency over ``requests`` requests.

    At ρ = 0.9 successive latencies are strongly correlated, so a run's mean converges
    slowly: over independent seeds its relative standard deviation is about 15/√n (measured
    on tier 1: 3.2% at 200,000 requests over 40 seeds, 12% at 20,000 over 200 seeds). The
    tolerance is four of those.
    """
    return 4 * 15 / math.sqrt(requests)


@dataclass
class Outcome:
    """What one run of one configuration produced."""

    requests: int  # requests completed
    mean_latency_ms: float
    wall_s: float


def _streams(seed: int) -> tuple[random.Random, random.Random]:
    """The inter-arrival and service-time streams shared by tiers 1, 2 and SimPy."""
    return stream(seed, "bench", "arrivals"), stream(seed, "bench", "service")


# -- tier 1: the kernel with plain callbacks ---------------------------------------------------
class CallbackStation:
    """An M/M/c station written as our components are: callbacks, a busy count, a deque."""

    def __init__(self, kernel: Kernel, requests: int, seed: int) -> None:
        self.kernel = kernel
        self.requests = requests
        arrivals, service = _streams(seed)
        self._gap = arrivals.expovariate
        self._service = service.expovariate
        self.arrived = 0
        self.completed = 0
        self.busy = 0
        self.queue: deque[float] = deque()  # arrival times of the requests that wait
        self.total_latency = 0.0

    def start(self) -> None:
        self.kernel.schedule(self._gap(LAM), self._arrive)

    def _arrive(self, _: Any) -> None:
        self.arrived += 1
        if self.arrived < self.requests:
            self.kernel.schedule(self._gap(LAM), self._arrive)
        if self.busy < SERVERS:
            self._start(self.kernel.now)
        else:
            self.queue.append(self.kernel.now)

    def _start(self, arrived_at: float) -> None:
        self.busy += 1
        self.kernel.schedule(self._service(MU), self._depart, arrived_at)

    def _depart(self, arrived_at: float) -> None:
        self.total_latency += self.kernel.now - arrived_at
        self.completed += 1
        self.busy -= 1
        if self.queue:
            self._start(self.queue.popleft())


def run_callbacks(requests: int, seed: int) -> Outcome:
    began = time.perf_counter()
    kernel = Kernel()
    station = CallbackStation(kernel, requests, seed)
    station.start()
    kernel.run()
    wall = time.perf_counter() - began
    return Outcome(station.completed, station.total_latency / station.completed, wall)


# -- tier 2: the kernel with generator processes -----------------------------------------------
class Tally:
    """Requests completed and the sum of their latencies."""

    __slots__ = ("completed", "total_latency")

    def __init__(self) -> None:
        self.completed = 0
        self.total_latency = 0.0


def _kernel_source(kernel: Kernel, servers: Resource, requests: int, seed: int,
                   tally: Tally) -> Generator[Any, Any, None]:
    arrivals, service = _streams(seed)
    for _ in range(requests):
        yield arrivals.expovariate(LAM)  # the kernel's idiom for a sleep: yield the delay
        kernel.process(_kernel_request(kernel, servers, service, tally))


def _kernel_request(kernel: Kernel, servers: Resource, service: random.Random,
                    tally: Tally) -> Generator[Any, Any, None]:
    arrived = kernel.now
    yield servers.request()
    yield service.expovariate(MU)
    servers.release()
    tally.total_latency += kernel.now - arrived
    tally.completed += 1


def run_processes(requests: int, seed: int) -> Outcome:
    began = time.perf_counter()
    kernel = Kernel()
    servers = Resource(kernel, SERVERS)
    tally = Tally()
    kernel.process(_kernel_source(kernel, servers, requests, seed, tally))
    kernel.run()
    wall = time.perf_counter() - began
    return Outcome(tally.completed, tally.total_latency / tally.completed, wall)


# -- tier 3: the full component stack ----------------------------------------------------------
def stack_document(requests: int, seed: int) -> dict[str, Any]:
    """client → service, sending ``requests`` requests on average, with time to drain."""
    rate_rps = LAM * 1000.0
    return {
        "version": 1,
        "title": "M/M/4 at ρ = 0.9 (engine benchmark)",
        "nodes": [
            {"id": "load", "kind": "client", "params": {"rate_rps": rate_rps}},
            {"id": "svc", "kind": "service", "params": {
                "workers": SERVERS, "queue_capacity": 10_000_000,
                "service_time_ms": {"dist": "exponential", "mean": SERVICE_MS}}},
        ],
        "edges": [{"id": "e", "from": "load", "to": "svc", "params": {"latency_ms": 0}}],
        "scenario": {"duration_s": requests / rate_rps, "drain_s": 60, "seed": seed,
                     "faults": []},
    }


def run_stack(requests: int, seed: int) -> Outcome:
    doc = prepare(stack_document(requests, seed))
    began = time.perf_counter()
    sim = simulate(doc, trace="off")
    sim.run()
    wall = time.perf_counter() - began
    summary = sim.summary()
    done = summary["requests"]["succeeded"]
    if summary["requests"]["in_flight"] or done != summary["requests"]["sent"]:
        raise SystemExit(f"stack: not every request succeeded: {summary['requests']}")
    return Outcome(done, summary["latency_ms"]["mean"], wall)


# -- SimPy: the canonical model ----------------------------------------------------------------
def _simpy_source(env: simpy.Environment, servers: simpy.Resource, requests: int, seed: int,
                  tally: Tally) -> Generator[Any, Any, None]:
    arrivals, service = _streams(seed)
    for _ in range(requests):
        yield env.timeout(arrivals.expovariate(LAM))
        env.process(_simpy_request(env, servers, service, tally))


def _simpy_request(env: simpy.Environment, servers: simpy.Resource, service: random.Random,
                   tally: Tally) -> Generator[Any, Any, None]:
    arrived = env.now
    with servers.request() as req:
        yield req
        yield env.timeout(service.expovariate(MU))
    tally.total_latency += env.now - arrived
    tally.completed += 1


def run_simpy(requests: int, seed: int) -> Outcome:
    began = time.perf_counter()
    env = simpy.Environment()
    servers = simpy.Resource(env, capacity=SERVERS)
    tally = Tally()
    env.process(_simpy_source(env, servers, requests, seed, tally))
    env.run()
    wall = time.perf_counter() - began
    return Outcome(tally.completed, tally.total_latency / tally.completed, wall)


# -- the comparison ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    key: str
    label: str
    run: Callable[[int, int], Outcome]
    shares_path: bool  # draws from the shared streams, so it follows the same sample path


CONFIGS = (
    Config("callbacks", "kernel, plain callbacks", run_callbacks, True),
    Config("processes", "kernel, generator processes", run_processes, True),
    Config("stack", "full stack (client → service)", run_stack, False),
    Config("simpy", f"SimPy {simpy.__version__}, process per request", run_simpy, True),
)


def measure(requests: int, repeats: int, seed: int) -> dict[str, list[Outcome]]:
    """Every configuration once per round, in an order that rotates between rounds."""
    runs: dict[str, list[Outcome]] = {c.key: [] for c in CONFIGS}
    for round_ in range(repeats):
        shift = round_ % len(CONFIGS)
        for config in CONFIGS[shift:] + CONFIGS[:shift]:
            gc.collect()
            runs[config.key].append(config.run(requests, seed + round_))
    return runs


def summarise(runs: dict[str, list[Outcome]], requests: int, repeats: int,
              seed: int) -> dict[str, Any]:
    expected = erlang_c_mean_latency(SERVERS, LAM, MU)
    tolerance = erlang_tolerance(requests * repeats)
    reference = [o.mean_latency_ms for o in runs["simpy"]]
    tiers: dict[str, Any] = {}
    for config in CONFIGS:
        outcomes = runs[config.key]
        latencies = [o.mean_latency_ms for o in outcomes]
        latency = statistics.fmean(latencies)
        # Rates per run, then their median: the stack's request count varies by seed.
        events_per_s = [EVENTS_PER_REQUEST * o.requests / o.wall_s for o in outcomes]
        tiers[config.key] = {
            "label": config.label,
            "requests": statistics.median(o.requests for o in outcomes),
            "wall_s": statistics.median(o.wall_s for o in outcomes),
            "events_per_s": statistics.median(events_per_s),
            "requests_per_s": statistics.median(e / EVENTS_PER_REQUEST for e in events_per_s),
            "runs": [{"seed": seed + i, "requests": o.requests, "wall_s": o.wall_s,
                      "mean_latency_ms": o.mean_latency_ms} for i, o in enumerate(outcomes)],
            "mean_latency_ms": latency,
            "erlang_c_rel_error": latency / expected - 1,
            "agrees_with_erlang_c": abs(latency / expected - 1) <= tolerance,
            "same_path_as_simpy": config.shares_path,
            "agrees_with_simpy": (
                all(abs(mine / theirs - 1) <= SAME_PATH_REL
                    for mine, theirs in zip(latencies, reference, strict=True))
                if config.shares_path else None),
        }
    simpy_rate = tiers["simpy"]["events_per_s"]
    for tier in tiers.values():
        tier["ratio_to_simpy"] = tier["events_per_s"] / simpy_rate
    return {
        "model": {"servers": SERVERS, "rho": RHO, "service_ms": SERVICE_MS,
                  "arrival_per_ms": LAM, "requests": requests, "discipline": "FIFO"},
        "events_per_request": EVENTS_PER_REQUEST,
        "events_definition": "arrival, service start and departure of each request",
        "repeats": repeats,
        "seed": seed,
        "statistic": "median",
        "erlang_c_mean_latency_ms": expected,
        "erlang_c_tolerance": tolerance,
        "tiers": tiers,
        "python": platform.python_version(),
        "simpy": simpy.__version__,
        "machine": platform.machine(),
    }


def failures(result: dict[str, Any]) -> list[str]:
    out = []
    for key, tier in result["tiers"].items():
        if not tier["agrees_with_erlang_c"]:
            out.append(f"{key}: mean latency {tier['mean_latency_ms']:.3f} ms is "
                       f"{tier['erlang_c_rel_error']:+.2%} off Erlang C")
        if tier["agrees_with_simpy"] is False:
            out.append(f"{key}: mean latency differs from SimPy's on the same sample path")
    return out


def table(result: dict[str, Any]) -> str:
    model = result["model"]
    lines = [
        f"M/M/{model['servers']}, ρ = {model['rho']}, mean service {model['service_ms']:g} ms, "
        f"{model['requests']:,} requests, FIFO; median of {result['repeats']} "
        f"(seeds from {result['seed']}, Python {result['python']})",
        f"events/s = {result['events_per_request']} events per request "
        f"({result['events_definition']}) / wall s",
        "",
        f"{'engine':<38} {'wall s':>8} {'requests/s':>11} {'events/s':>11} {'× SimPy':>8} "
        f"{'mean latency ms (vs Erlang C)':>30}",
    ]
    for tier in result["tiers"].values():
        lines.append(
            f"{tier['label']:<38} {tier['wall_s']:>8.3f} {tier['requests_per_s']:>11,.0f} "
            f"{tier['events_per_s']:>11,.0f} {tier['ratio_to_simpy']:>8.2f} "
            f"{tier['mean_latency_ms']:>22.3f} ({tier['erlang_c_rel_error']:+.1%})")
    lines += [
        "",
        f"Erlang C mean latency: {result['erlang_c_mean_latency_ms']:.3f} ms; each mean "
        f"latency above is averaged over the runs and must be within "
        f"±{result['erlang_c_tolerance']:.1%} of it.",
        "Callbacks, processes and SimPy follow one sample path per seed (their means must "
        "agree to 1e-9); the stack draws its own.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: {QUICK_REQUESTS:,} requests, 1 repeat")
    parser.add_argument("--requests", type=int, help=f"requests per run ({REQUESTS:,})")
    parser.add_argument("--repeats", type=int, help=f"runs per configuration ({REPEATS})")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--json", type=Path, default=RESULTS, help="where to write results")
    args = parser.parse_args(argv)
    requests = args.requests or (QUICK_REQUESTS if args.quick else REQUESTS)
    repeats = args.repeats or (1 if args.quick else REPEATS)

    result = summarise(measure(requests, repeats, args.seed), requests, repeats, args.seed)
    print(table(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {args.json}")
    problems = failures(result)
    for problem in problems:
        print(f"CHECK FAILED: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
