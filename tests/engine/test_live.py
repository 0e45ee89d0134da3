"""Frames and live controls (patterns.live): what the worker streams and a replay re-runs."""

import itertools

import orjson
import pytest

from patterns.live import MAX_FRAME_EVENTS, ControlError, LiveRun, replay
from patterns.run import prepare


def play(live: LiveRun, wall_ms: float = 50.0, controls=None) -> list[dict]:
    """Step to the end, applying ``controls`` {seq: message} after that frame."""
    frames = []
    while not live.done:
        frames.append(live.step(wall_ms))
        for message in (controls or {}).get(frames[-1]["seq"], []):
            live.control(message)
    return frames


def test_frames_tile_the_run_and_carry_every_event_once():
    doc = prepare("request-response", duration_s=5)
    frames = play(LiveRun(doc, "live", speed=2))
    assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
    assert all(a["t1"] == b["t0"] for a, b in itertools.pairwise(frames))
    assert frames[-1]["t1"] == 5000
    assert all(f["t0"] <= e["t"] <= f["t1"] for f in frames for e in f["events"])
    # Each frame covers wall time × speed of simulated time.
    assert frames[0]["t1"] - frames[0]["t0"] == pytest.approx(100)


def test_a_busy_run_at_top_speed_is_cut_into_bounded_frames():
    doc = prepare({"nodes": [{"id": "c", "kind": "client", "params": {"rate_rps": 5000}},
                             {"id": "s", "kind": "service", "params": {"workers": 200}}],
                   "edges": [{"id": "e", "from": "c", "to": "s"}],
                   "scenario": {"duration_s": 3}})
    frames = play(LiveRun(doc, "live", speed=1000))
    assert len(frames) > 10
    assert max(len(f["events"]) for f in frames) <= MAX_FRAME_EVENTS * 1.1
    assert frames[-1]["t1"] == 3000


def test_fast_mode_streams_metrics_and_states_not_messages():
    frames = play(LiveRun(prepare("circuit-breaker"), "fast"))
    kinds = {e["k"] for f in frames for e in f["events"]}
    assert "metric" in kinds and "node.state" in kinds
    assert not kinds & {"msg.send", "msg.recv", "req.done"}


def test_a_replay_with_the_recorded_interventions_is_byte_identical():
    doc = prepare("request-response", duration_s=8)
    live = LiveRun(doc, "live", speed=1)
    frames = play(live, controls={
        20: [{"action": "inject", "fault": {"target": "api", "action": "crash",
                                            "until_s": 3}}],
        30: [{"action": "speed", "value": 7}, {"action": "pause"}, {"action": "resume"}],
        40: [{"action": "inject", "fault": {"target": "users-api", "action": "drop_rate",
                                            "value": 0.5}}],
    })
    original = [e for f in frames for e in f["events"]]
    assert [i["action"] for i in live.interventions] == ["inject", "inject"]
    assert any(e["k"] == "node.down" for e in original)
    replayed = list(replay(doc, live.interventions))
    assert orjson.dumps(replayed) == orjson.dumps(original)
    # Without the interventions the stream differs: the check can fail.
    assert orjson.dumps(list(replay(doc, []))) != orjson.dumps(original)


def test_a_stop_ends_the_run_and_is_replayed():
    doc = prepare("request-response", duration_s=8)
    live = LiveRun(doc, "live", speed=1)
    frames = play(live, controls={10: [{"action": "stop"}]})
    assert live.stopped and frames[-1]["t1"] == 500
    original = [e for f in frames for e in f["events"]]
    assert orjson.dumps(list(replay(doc, live.interventions))) == orjson.dumps(original)


@pytest.mark.parametrize(("message", "field"), [
    ({"action": "warp"}, "action"),
    ({"action": "speed", "value": 0}, "value"),
    ({"action": "inject", "fault": {"target": "nope", "action": "crash"}}, "fault.target"),
    ({"action": "inject", "fault": {"target": "api", "action": "slow", "value": -2}},
     "fault.value"),
    ({"action": "inject", "fault": "crash"}, "fault"),
])
def test_bad_controls_name_the_field_and_change_nothing(message, field):
    live = LiveRun(prepare("request-response", duration_s=2), "live")
    live.step(50)
    with pytest.raises(ControlError) as caught:
        live.control(message)
    assert caught.value.field == field
    assert live.interventions == []
