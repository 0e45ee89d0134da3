"""A keyed store: get, put, compare-and-set on a version, TTL, and a fencing-token check.

``kv_store`` answers calls whose ``req.op`` is ``get``, ``put``, ``cas`` or ``delete`` on
``req.key``; what an operation carries travels in ``req.headers``:

- ``value``: what a ``put`` / ``cas`` writes;
- ``version``: the version a ``cas`` expects (0: the key must be absent);
- ``ttl_ms``: how long a written value lives (the ``ttl_s`` parameter when absent; 0: for
  ever), measured on the store's own clock, so a ``clock_skew`` on the store moves expiry;
- ``token``: a fencing token (etcd revision, ZooKeeper zxid, Chubby sequencer).

Every key has a version that rises by one with each write (0: absent). The store keeps, per
key, the highest token it has accepted: with ``fencing`` on, any operation on that key
(a read too) with a lower token is refused (409, ``stale token``), so a read-modify-write
by a holder whose lock has passed on can neither read nor write after the next holder did;
with fencing off the token is only recorded, and a stale one is counted as accepted. An
operation without a token is never checked.

A reply's ``value`` is ``{"value", "version"}`` (``value`` None when absent); a refused
operation fails with error class ``business`` and status 409 (version mismatch, stale
token). Operations take ``op_ms`` and take effect when they arrive.

Durable state: the data, the versions and the token high-water marks are on disk, so a
crash keeps them and a restart serves them again; calls in flight at the crash are lost.
Operations that carry a token are recorded on the run (``store.read`` / ``store.write``
with ``token`` and ``result`` ``accepted`` | ``rejected_stale``), for the checks.
:meth:`KvStore.digest` is the end-of-run digest of the contents.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, ClassVar

from patterns.engine import messages as m
from patterns.engine.node import Node, register_kind
from patterns.params import Param

if TYPE_CHECKING:
    from patterns.engine.network import Call

OPS = ("get", "put", "cas", "delete")
ACCEPTED = "accepted"
REJECTED_STALE = "rejected_stale"


def store_params(fencing: bool) -> tuple[Param, ...]:
    """The store's parameters, with the given default for ``fencing``."""
    return (
        Param("op_ms", "float", 0.2, unit="ms", min=0, max=60_000,
              help="Time to serve one operation."),
        Param("ttl_s", "float", 0.0, unit="s", min=0, max=86_400,
              help="How long a written value lives when the write names no TTL (0: for "
                   "ever)."),
        Param("fencing", "bool", fencing,
              help="Refuse an operation whose token is below the highest accepted for its "
                   "key."),
    )


class Item:
    """One key's stored value: its version and when it expires (local ms; None: never)."""

    __slots__ = ("expires_at", "value", "version")

    def __init__(self, value: Any, version: int, expires_at: float | None) -> None:
        self.value = value
        self.version = version
        self.expires_at = expires_at

    def __deepcopy__(self, memo: dict[int, Any]) -> Item:
        return Item(self.value, self.version, self.expires_at)


@register_kind
class KvStore(Node):
    KIND = "kv_store"
    LABEL = "Key-value store"
    DESCRIPTION = ("A keyed store with versions, compare-and-set, TTL and an optional "
                   "fencing-token check; its contents survive a crash.")
    PARAMS: ClassVar[tuple[Param, ...]] = store_params(fencing=False)
    DURABLE = ("data", "tokens", "token_holders")

    def __init__(self, sim: Any, node_id: str, params: dict[str, Any]) -> None:
        super().__init__(sim, node_id, params)
        # Counters for the summary (volatile state is the data path's, not these).
        self.processed = 0
        self.reads = 0
        self.writes = 0
        self.cas_conflicts = 0
        self.stale_rejected = 0
        self.stale_writes_rejected = 0
        self.stale_accepted = 0
        self.stale_writes_accepted = 0
        self.expired = 0
        self.init_state()

    def init_state(self) -> None:
        self.data: dict[str, Item] = {}
        # Per key: the highest token accepted, and who used it (for the notes).
        self.tokens: dict[str, int] = {}
        self.token_holders: dict[str, str] = {}

    # -- serving -----------------------------------------------------------------------------
    def receive(self, call: Call) -> None:
        if self.refuse_if_unavailable(call):
            return
        failure = self.injected_failure()
        reply = failure if failure is not None else self.apply(
            call.req.op, call.req.key or "", call.req.headers or {}, call.req.client)
        delay = self.p["op_ms"] * self.slow
        if delay <= 0.0:
            call.reply(reply)
            return
        life = self.incarnation

        def answer(_: Any) -> None:
            if not self.down and self.incarnation == life:
                call.reply(reply)
        self.kernel.schedule(delay, answer)

    def apply(self, op: str, key: str, headers: dict[str, Any], who: str = "") -> m.Reply:
        """Apply one operation now and return its reply (the store's whole semantics)."""
        if op not in OPS:
            return m.Reply(m.FAILED, error=m.BUSINESS, status=400,
                           reason=f"unknown operation {op!r}")
        self.processed += 1
        item = self._live(key)
        token = headers.get("token")
        if token is None:
            return self._do(op, key, headers, item)
        token = int(token)
        highest = self.tokens.get(key)
        stale = highest is not None and token < highest
        write = op != "get"
        event: dict[str, Any] = {"k": "store.write" if write else "store.read",
                                 "node": self.id, "key": key, "by": who, "token": token,
                                 "highest": highest}
        if write:
            event["prev"] = item.value if item is not None else None
            event["value"] = headers.get("value")
        if stale and self.p["fencing"]:
            self.stale_rejected += 1
            self.stale_writes_rejected += write
            event["result"] = REJECTED_STALE
            self.sim.record(event)
            self.note(f"store refused {who}'s {'write' if write else 'read'}: token "
                      f"{token} < {highest} ({self.token_holders.get(key, '?')}'s)")
            return m.Reply(m.FAILED, error=m.BUSINESS, status=409,
                           reason=f"stale token {token} < {highest}")
        reply = self._do(op, key, headers, item)
        if not reply.ok:  # a cas that lost: nothing changed, the token is not taken
            return reply
        if stale:
            self.stale_accepted += 1
            self.stale_writes_accepted += write
            self.note(f"store accepted {who}'s stale {'write' if write else 'read'}: "
                      f"token {token} < {highest} (fencing off)")
        else:
            self.tokens[key] = token
            self.token_holders[key] = who
        event["result"] = ACCEPTED
        self.sim.record(event)
        return reply

    def _do(self, op: str, key: str, headers: dict[str, Any], item: Item | None) -> m.Reply:
        if op == "get":
            self.reads += 1
            return m.Reply(m.SUCCEEDED, value=_view(item))
        if op == "cas":
            expected = int(headers.get("version") or 0)
            current = item.version if item is not None else 0
            if expected != current:
                self.cas_conflicts += 1
                return m.Reply(m.FAILED, error=m.BUSINESS, status=409,
                               reason=f"version {current}, not {expected}",
                               value=_view(item))
        self.writes += 1
        if op == "delete":
            self.data.pop(key, None)
            return m.Reply(m.SUCCEEDED, value=_view(None))
        version = (item.version if item is not None else 0) + 1
        ttl = headers.get("ttl_ms")
        ttl_ms = float(ttl) if ttl is not None else self.p["ttl_s"] * 1000.0
        expires = self.local_now() + ttl_ms if ttl_ms > 0.0 else None
        new = self.data[key] = Item(headers.get("value"), version, expires)
        return m.Reply(m.SUCCEEDED, value=_view(new))

    def _live(self, key: str) -> Item | None:
        """The key's item unless its TTL has run out (on this store's clock)."""
        item = self.data.get(key)
        if item is not None and item.expires_at is not None \
                and self.local_now() >= item.expires_at:
            del self.data[key]
            self.expired += 1
            return None
        return item

    # -- reporting ---------------------------------------------------------------------------
    def value(self, key: str) -> Any:
        """The key's current value (None when absent or expired)."""
        item = self._live(key)
        return item.value if item is not None else None

    def digest(self) -> str:
        """A short digest of the live contents (key, value, version), stable across runs."""
        rows = sorted((k, json.dumps(i.value, sort_keys=True, default=str), i.version)
                      for k, i in self.data.items()
                      if i.expires_at is None or self.local_now() < i.expires_at)
        return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]

    def stats(self, duration_ms: float) -> dict[str, Any]:
        return {"processed": self.processed, "utilisation": 0.0, "max_queue": 0,
                "reads": self.reads, "writes": self.writes, "keys": len(self.data),
                "cas_conflicts": self.cas_conflicts, "expired": self.expired,
                "stale_rejected": self.stale_rejected,
                "stale_accepted": self.stale_accepted, "digest": self.digest()}

    def sample(self, window_ms: float) -> dict[str, Any]:
        return {"keys": len(self.data), "stale_rejected": self.stale_rejected}


def _view(item: Item | None) -> dict[str, Any]:
    if item is None:
        return {"value": None, "version": 0}
    return {"value": item.value, "version": item.version}
