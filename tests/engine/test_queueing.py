"""The engine agrees with queueing theory: M/M/c mean latency against Erlang C."""


import pytest

from patterns.engine.theory import erlang_c_mean_latency
from tests.helpers import document, run


def mmc(c: int, rho: float, duration_s: float, seed: int, service_ms: float = 20.0):
    rate_rps = rho * c / service_ms * 1000
    doc = document(
        [{"id": "load", "kind": "client", "params": {"rate_rps": rate_rps}},
         {"id": "svc", "kind": "service", "params": {
             "workers": c, "queue_capacity": 10_000_000,
             "service_time_ms": {"dist": "exponential", "mean": service_ms}}}],
        [{"id": "e", "from": "load", "to": "svc", "params": {"latency_ms": 0}}],
        duration_s=duration_s, seed=seed)
    summary, _ = run(doc)
    expected = erlang_c_mean_latency(c, rate_rps / 1000, 1 / service_ms)
    return summary["latency_ms"]["mean"], expected


@pytest.mark.parametrize(("c", "rho", "duration_s", "tolerance"), [
    (4, 0.5, 2000, 0.03),
    (4, 0.8, 3000, 0.03),
])
def test_mmc_mean_latency_matches_erlang_c(c, rho, duration_s, tolerance):
    measured, expected = mmc(c, rho, duration_s, seed=7)
    assert measured == pytest.approx(expected, rel=tolerance)


def test_mm4_at_095_within_six_percent():
    # Near saturation the mean converges slowly: average independent replications.
    results = [mmc(4, 0.95, 3000, seed=s) for s in (11, 12, 13, 14)]
    measured = sum(r[0] for r in results) / len(results)
    assert measured == pytest.approx(results[0][1], rel=0.06)


def test_mm1_mean_latency_is_one_over_mu_minus_lambda():
    measured, expected = mmc(1, 0.7, 3000, seed=3)
    assert expected == pytest.approx(1 / (1 / 20 - 0.7 / 20))
    assert measured == pytest.approx(expected, rel=0.04)
