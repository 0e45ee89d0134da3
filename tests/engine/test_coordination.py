"""Engine capabilities for coordination patterns: clusters and peer messages, durable and
volatile state, pause, partitions (groups, hold, one way), local clocks and clock_skew, role
selectors as fault targets, and the operation history."""

from __future__ import annotations

from typing import Any

import pytest

from patterns.engine.clock import Clock, LocalTimer
from patterns.engine.kernel import Kernel
from patterns.live import LiveRun, replay
from patterns.run import prepare, simulate
from patterns.topology import TopologyError, validate
from tests.helpers import document


def electors(n: int = 5, cluster: str = "c", **params: Any) -> list[dict[str, Any]]:
    return [{"id": f"n{i}", "kind": "raft_elector",
             "params": {"cluster": cluster, "peer_latency_ms": 1, **params}}
            for i in range(1, n + 1)]


def sim_of(nodes, edges=(), faults=None, duration_s=5, trace="full", seed=1):
    doc = prepare(document(list(nodes), list(edges), duration_s=duration_s, seed=seed,
                           faults=faults))
    return simulate(doc, trace=trace)


def leaders(sim) -> list[tuple[float, str, int]]:
    return [(e["t"], e["node"], e["term"]) for e in sim.records if e["k"] == "raft.leader"]


# -- (a) clusters and peer messages ------------------------------------------------------------
def test_a_cluster_gets_a_full_mesh_of_peer_links_without_edges():
    sim = sim_of(electors(4), duration_s=1).run()
    cluster = sim.clusters["c"]
    assert [n.id for n in cluster.members] == ["n1", "n2", "n3", "n4"]
    assert cluster.majority == 3
    assert sorted(sim.nodes["n2"].peers) == ["n1", "n3", "n4"]
    sent = {(src, dst): link.sent for src, out in cluster.links.items()
            for dst, link in out.items()}
    assert len(sent) == 12
    (_, leader, _), = leaders(sim)
    others = [n for n in ("n1", "n2", "n3", "n4") if n != leader]
    assert all(sent[(leader, n)] > 0 and sent[(n, leader)] > 0 for n in others)
    assert sim.network.edges == {}


def test_peer_messages_take_the_link_latency_and_are_traced():
    sim = sim_of(electors(3), duration_s=1).run()
    events = sim.trace.drain()
    sends = [e for e in events if e["k"] == "peer.send"]
    recvs = [e for e in events if e["k"] == "peer.recv"]
    assert sends and all(e["d"] == 1.0 for e in sends)
    assert len(recvs) >= len(sends) - 6  # all but those still in flight at the end
    first = sends[0]
    arrival = next(e for e in recvs if e["from"] == first["from"] and e["to"] == first["to"]
                   and e["type"] == first["type"])
    assert arrival["t"] == pytest.approx(first["t"] + 1.0)


def test_cluster_names_are_checked():
    nodes = electors(2)
    nodes[1]["params"]["cluster"] = "n1"
    with pytest.raises(TopologyError) as err:
        validate(document(nodes, []))
    assert err.value.field == "nodes[1].params.cluster"
    bad = electors(1)
    bad[0]["params"]["cluster"] = ""
    with pytest.raises(TopologyError) as err:
        validate(document(bad, []))
    assert err.value.field == "nodes[0].params.cluster"
    wrong = electors(1, election_timeout_ms=[300, 150])
    with pytest.raises(TopologyError) as err:
        validate(document(wrong, []))
    assert err.value.field == "nodes[0].params.election_timeout_ms"


# -- (b) durable and volatile state ---------------------------------------------------------------
def test_a_crash_keeps_durable_state_and_loses_the_rest():
    sim = sim_of(electors(3), duration_s=3)
    sim.advance(1000)
    node = sim.nodes["n1"]
    node.current_term, node.voted_for, node.leader_id = 7, "n2", "n2"
    node.crash()
    assert not node.election_timer.armed, "timers are volatile"
    node.current_term = 99  # what memory held after the crash does not matter
    node.recover()
    assert (node.current_term, node.voted_for) == (7, "n2")
    assert node.leader_id is None, "volatile state starts fresh"
    assert node.election_timer.armed, "on_recover re-armed the election timer"
    lives = [e["life"] for e in sim.trace.drain() if e["k"] == "node.life"]
    assert lives == ["DOWN", "RECOVERING", "READY"]


def test_a_kind_can_declare_a_field_volatile():
    sim = sim_of(electors(3, durable_vote=False), duration_s=2)
    sim.advance(1000)
    node = sim.nodes["n1"]
    node.current_term, node.voted_for = 4, "n3"
    node.crash()
    node.recover()
    assert (node.current_term, node.voted_for) == (4, None)


# -- (c) pause ---------------------------------------------------------------------------------
def test_pause_freezes_timers_and_messages_and_resume_goes_on_where_it_was():
    sim = sim_of(electors(3), duration_s=5, faults=[
        {"at_s": 1, "until_s": 3, "target": "leader:c", "action": "pause"}])
    sim.advance(999)
    leader = next(n for n in sim.nodes.values() if n.role == "leader")
    sim.advance(1000.5)
    assert leader.paused
    handled = leader.handled
    term = leader.current_term
    sim.advance(2999)
    assert leader.handled == handled, "a paused node handles nothing"
    assert leader.role == "leader", "its memory is kept: it still believes it leads"
    others = [n for n in sim.nodes.values() if n is not leader]
    assert max(n.current_term for n in others) > term, "the others elected a new leader"
    sim.advance(3100)
    assert not leader.paused
    assert leader.role == "follower", "on resume it hears the higher term and steps down"
    assert leader.handled > handled, "its inbox was delivered"
    lives = [e["life"] for e in sim.trace.drain() if e["k"] == "node.life"]
    assert lives == ["PAUSED", "READY"]


def test_a_paused_timer_keeps_its_remaining_time():
    kernel = Kernel()
    fired: list[float] = []
    timer = LocalTimer(kernel, Clock(kernel), lambda: fired.append(kernel.now))
    timer.start(100)
    kernel.run(40)
    timer.freeze()
    kernel.run(500)
    assert fired == []
    timer.thaw()
    kernel.run()
    assert fired == [pytest.approx(560)]


def test_only_pausable_kinds_can_be_paused():
    nodes = [{"id": "api", "kind": "service"}]
    with pytest.raises(TopologyError) as err:
        validate(document(nodes, [], faults=[{"at_s": 1, "target": "api",
                                              "action": "pause"}]))
    assert err.value.field == "scenario.faults[0].target"


# -- (d) partitions ----------------------------------------------------------------------------
def test_a_cluster_split_into_groups_cuts_only_the_links_between_groups():
    sim = sim_of(electors(5), duration_s=4, faults=[
        {"at_s": 1, "until_s": 3, "target": "c", "action": "partition",
         "groups": [["n1", "n2"]]}], trace="off")
    sim.advance(2000)
    cluster = sim.clusters["c"]
    assert cluster.link("n1", "n2").cut == 0
    assert cluster.link("n3", "n5").cut == 0
    assert cluster.link("n1", "n3").cut == 1 and cluster.link("n4", "n2").cut == 1
    sim.advance(3000)
    assert all(link.cut == 0 for out in cluster.links.values() for link in out.values())


def test_the_minority_side_cannot_elect_and_the_majority_can():
    sim = sim_of(electors(5), duration_s=6, faults=[
        {"at_s": 0, "target": "c", "action": "partition", "groups": [["n1", "n2"]]}])
    sim.run()
    won = {node for _, node, _ in leaders(sim)}
    assert won and won <= {"n3", "n4", "n5"}
    assert sim.nodes["n1"].current_term == 0, "pre-vote keeps the minority's term"


def test_a_one_way_partition_cuts_one_direction():
    sim = sim_of(electors(3), duration_s=2, faults=[
        {"at_s": 0, "target": "n1", "action": "partition", "direction": "outbound"}],
        trace="off")
    sim.advance(1)
    cluster = sim.clusters["c"]
    assert cluster.link("n1", "n2").cut and cluster.link("n1", "n3").cut
    assert not cluster.link("n2", "n1").cut and not cluster.link("n3", "n1").cut


def test_a_holding_partition_delivers_in_order_after_the_heal():
    sim = sim_of(electors(3), duration_s=3, faults=[
        {"at_s": 1, "until_s": 2, "target": "n3", "action": "partition", "mode": "hold"}])
    sim.run()
    events = sim.trace.drain()
    held = [e for e in events if e["k"] == "peer.hold"]
    assert held and not [e for e in events if e["k"] == "peer.drop"]
    late = [e for e in events if e["k"] == "peer.recv" and 2000 <= e["t"] <= 2001.5
            and "n3" in (e["from"], e["to"])]
    assert len(late) >= len(held), "every held message arrives right after the heal"


def test_holding_and_one_way_partitions_on_edges():
    nodes = [{"id": "users", "kind": "client", "params": {"rate_rps": 100}},
             {"id": "api", "kind": "service", "params": {"workers": 50}}]
    edges = [{"id": "e1", "from": "users", "to": "api", "params": {"latency_ms": 1}}]
    held = sim_of(nodes, edges, duration_s=3, trace="off", faults=[
        {"at_s": 1, "until_s": 2, "target": "e1", "action": "partition", "mode": "hold"}]).run()
    assert held.outcomes["succeeded"] == held.sent - (held.sent - sum(held.outcomes.values()))
    assert held.network.edges["e1"].dropped == 0
    lat = held.latency_between(1000, 1500)
    assert lat["max"] > 500, "requests held during the partition waited for the heal"
    replies_cut = sim_of(nodes, edges, duration_s=3, trace="off", faults=[
        {"at_s": 1, "until_s": 2, "target": "e1", "action": "partition",
         "direction": "inbound"}]).run()
    assert replies_cut.nodes["api"].completed > replies_cut.outcomes["succeeded"], \
        "inbound: the service did the work, the replies were lost"


@pytest.mark.parametrize(("fault", "field"), [
    ({"target": "c", "action": "partition"}, "groups"),
    ({"target": "c", "action": "partition", "groups": [["ghost"]]}, "groups[0][0]"),
    ({"target": "c", "action": "partition", "groups": [["n1"], ["n1"]]}, "groups[1][0]"),
    ({"target": "c", "action": "partition", "groups": [[]]}, "groups[0]"),
    ({"target": "n1", "action": "partition", "groups": [["n1"]]}, "groups"),
    ({"target": "n1", "action": "crash", "mode": "hold"}, "mode"),
    ({"target": "n1", "action": "partition", "mode": "stash"}, "mode"),
    ({"target": "n1", "action": "partition", "direction": "sideways"}, "direction"),
    ({"target": "c", "action": "crash"}, "action"),
    ({"target": "n1", "action": "clock_skew"}, "offset_ms"),
    ({"target": "n1", "action": "clock_skew", "rate": 0}, "rate"),
    ({"target": "n1", "action": "crash", "rate": 2}, "rate"),
    ({"target": "leader:nope", "action": "crash"}, "target"),
    ({"target": "boss:c", "action": "crash"}, "target"),
    ({"target": "leader:c", "action": "set", "param": "heartbeat_ms", "value": 5}, "target"),
])
def test_coordination_faults_are_checked_field_by_field(fault, field):
    with pytest.raises(TopologyError) as err:
        validate(document(electors(3), [], faults=[{"at_s": 1, **fault}]))
    assert err.value.field == f"scenario.faults[0].{field}"


# -- (e) local clocks -----------------------------------------------------------------------------
def test_a_clock_skew_moves_the_local_clock_and_retimes_local_timers():
    kernel = Kernel()
    clock = Clock(kernel)
    fired: list[float] = []
    timer = LocalTimer(kernel, clock, lambda: fired.append(kernel.now))
    timer.start(100)
    kernel.run(50)
    clock.skew(1000, 2.0)
    timer.retime(1.0)
    assert clock.now() == pytest.approx(1050)
    kernel.run()
    assert fired == [pytest.approx(75)], "50 local ms left at twice the rate: 25 ms"


def test_a_fast_clock_makes_a_node_time_out_sooner():
    fast = sim_of(electors(1), duration_s=1, faults=[
        {"at_s": 0, "target": "n1", "action": "clock_skew", "rate": 10}], trace="off").run()
    slow = sim_of(electors(1), duration_s=1, trace="off").run()
    (t_fast, *_), = leaders(fast)
    (t_slow, *_), = leaders(slow)
    assert t_fast == pytest.approx(t_slow / 10, rel=0.01)
    assert fast.nodes["n1"].local_now() == pytest.approx(10_000)


# -- (f) role selectors ------------------------------------------------------------------------
def test_a_role_selector_resolves_when_the_fault_fires_and_is_recorded():
    sim = sim_of(electors(5), duration_s=4, faults=[
        {"at_s": 2, "until_s": 3, "target": "leader:c", "action": "crash"}])
    sim.advance(1999)
    leader = next(n.id for n in sim.nodes.values() if n.role == "leader")
    sim.run()
    (applied,) = sim.faults_applied
    assert applied["node"] == leader
    events = sim.trace.drain()
    fault = next(e for e in events if e["k"] == "fault" and e["action"] == "crash")
    assert fault["node"] == leader and fault["target"] == "leader:c"
    down = next(e for e in events if e["k"] == "node.down")
    assert down["node"] == leader


def test_a_selector_with_no_holder_is_recorded_and_does_nothing():
    sim = sim_of(electors(3), duration_s=1, faults=[
        {"at_s": 0, "target": "leader:c", "action": "crash"}]).run()
    assert sim.faults_applied[0]["node"] is None
    assert not any(n.down for n in sim.nodes.values())


def test_a_live_injected_selector_replays_on_the_same_node():
    doc = prepare(document(electors(5), [], duration_s=3))
    live = LiveRun(doc, mode="live", speed=1000)
    live.step(1.2)  # to 1.2 s
    recorded = live.control({"action": "inject",
                             "fault": {"target": "leader:c", "action": "crash"}})
    assert recorded is not None and recorded["fault"]["node"].startswith("n")
    streamed = []
    while not live.done:
        streamed += live.step(1000)["events"]
    replayed = [e for e in replay(doc, live.interventions) if e["t"] > 1200]
    streamed = [e for e in streamed if e["t"] > 1200]
    assert replayed == streamed


# -- (g) the operation history -----------------------------------------------------------------
def test_the_operation_history_records_each_step_as_an_event():
    sim = sim_of(electors(1), duration_s=1, trace="off")
    history = sim.history
    write = history.invoke("app_a", "write", 3)
    read = history.invoke("app_b", "read")
    lost = history.invoke("app_a", "write", 4)
    history.ok(write)
    history.ok(read, 3)
    history.info(lost, "timeout")
    assert [e["k"] for e in history.events] == ["op.invoke"] * 3 + ["op.ok", "op.ok",
                                                                     "op.info"]
    assert history.events[-1]["error"] == "timeout"
    assert read.to_json()["value"] == 3 and read.result == "ok"
    pending = history.invoke("app_b", "cas", [3, 5])
    assert history.open_ops() == [pending]
    history.fail(pending, "precondition failed")
    assert pending.result == "fail"
    with pytest.raises(ValueError):
        history.ok(pending)


def test_a_crash_at_a_named_point_strikes_there_once_and_recovers_after_down_s():
    from patterns.engine.simulation import Simulation
    from patterns.topology import validate

    doc = validate({"nodes": [
        {"id": "boss", "kind": "orchestrator", "params": {"steps": ["p.work"]}},
        {"id": "shop", "kind": "client", "params": {"rate_rps": 50}},
        {"id": "p", "kind": "participant", "params": {}}],
        "edges": [{"id": "a", "from": "shop", "to": "boss"},
                  {"id": "b", "from": "boss", "to": "p"}],
        "scenario": {"duration_s": 5, "seed": 1, "faults": [
            {"at_s": 1, "target": "p", "action": "crash",
             "point": "after_commit_before_reply", "down_s": 0.5}]}})
    sim = Simulation(doc, trace="full").run()
    events = sim.trace.drain()
    downs = [e["t"] for e in events if e["k"] == "node.down" and e["node"] == "p"]
    ups = [e["t"] for e in events if e["k"] == "node.up" and e["node"] == "p"]
    commits = [e["t"] for e in sim.records if e["k"] == "tx.commit"]
    # Once, right at the first commit after 1 s, and back 0.5 s later; nothing committed
    # while it was down.
    crash_at = min(t for t in commits if t >= 1000)
    assert downs == [crash_at] and ups == [pytest.approx(crash_at + 500)]
    assert not [t for t in commits if crash_at < t < crash_at + 500]
    assert sim.nodes["p"].down is False


def test_overlapping_faults_of_one_action_revert_to_what_is_still_in_force():
    from patterns.engine.simulation import Simulation
    from patterns.topology import validate

    doc = validate({"nodes": [{"id": "c", "kind": "client", "params": {}},
                              {"id": "s", "kind": "service", "params": {}}],
                    "edges": [{"id": "e", "from": "c", "to": "s"}],
                    "scenario": {"duration_s": 20, "faults": [
                        {"at_s": 1, "until_s": 5, "target": "s", "action": "slow", "value": 20},
                        {"at_s": 2, "until_s": 8, "target": "s", "action": "slow", "value": 50},
                        {"at_s": 1, "until_s": 9, "target": "s", "action": "error_rate",
                         "value": 0.5, "error_class": "business"},
                        {"at_s": 3, "until_s": 4, "target": "s", "action": "error_rate",
                         "value": 0.1},
                        {"at_s": 1, "until_s": 6, "target": "e", "action": "drop_rate",
                         "value": 0.2},
                        {"at_s": 2, "until_s": 3, "target": "e", "action": "drop_rate",
                         "value": 0.9}]}})
    sim = Simulation(doc, trace="off")
    node, edge = sim.nodes["s"], sim.network.edges["e"]
    seen = {}
    for t in (1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 8.5, 9.5):
        sim.advance(t * 1000)
        seen[t] = (node.slow, node.fault_error_rate, node.fault_error_class, edge.drop_rate)
    assert seen[1.5] == (20.0, 0.5, "business", 0.2)
    assert seen[2.5] == (50.0, 0.5, "business", 0.9)
    assert seen[3.5] == (50.0, 0.1, "transient", 0.2)
    # The first slow ends while the second is in force: the second stays.
    assert seen[4.5] == (50.0, 0.5, "business", 0.2)
    assert seen[5.5] == (50.0, 0.5, "business", 0.2)
    assert seen[6.5] == (50.0, 0.5, "business", 0.0)
    assert seen[8.5] == (1.0, 0.5, "business", 0.0)
    assert seen[9.5] == (1.0, 0.0, "transient", 0.0)
