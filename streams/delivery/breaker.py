"""A circuit breaker per subscription: stop spending time on an endpoint that is down.

An endpoint that times out or refuses connections costs the worker a request
slot for the whole timeout (10 s by default) per attempt, and the record being
attempted holds its partition's commit position meanwhile. Without a breaker,
one dead endpoint subscribed to busy event types keeps dozens of requests
hanging at all times, and every healthy endpoint on the same worker pays for it
(measured: healthy endpoints kept 39% of their throughput beside ten dead ones;
docs/benchmarks.md, ``noisy``).

The rules (all pure; the clock is passed in):

- **closed**: every request goes out. ``threshold`` consecutive *tripping*
  failures (a timeout or a connection failure, :data:`TRIPPING`) open the
  breaker. A receiver that answers, whatever the status, costs little and
  does not trip it: fast 5xx responses are the retry schedule's business.
- **open** for ``base_s`` after the first trip, doubling at each failed probe
  up to ``max_s``: no request goes out. Deliveries that arrive are *skipped*:
  recorded as an attempt that sent nothing (``sent: false`` in the attempt
  log, error ``circuit open``) and scheduled like any failed attempt, though
  not before the breaker lets a probe through (:meth:`Breaker.reopens_in`,
  so a short first retry does not skip again and again). While a probe is
  out, that is after the probe's own timeout plus the next open time: a
  delivery skipped then would otherwise come back while the probe still
  hangs and spend another retry on a skip. They end in the dead-letter topic
  if the endpoint never comes back. Skips do not count
  towards auto-disable.
- **probing**: once the open time has passed, the next delivery goes out as
  the only request (the probe). A probe that fails with a tripping failure
  opens the breaker again for twice as long; any answer closes it.

A request already in flight when the breaker opened may still come back; an
answer closes the breaker (the endpoint is up), a tripping failure changes
nothing.

**Replays** the operator asked for are not refused by a breaker that opened
*before* they were asked (:meth:`Breaker.predates`): the breaker is then news
from the outage, and the endpoint may well be back (that is usually why one
replays). Such a delivery goes out at once as the probe, without waiting for
the open time to end; if a probe is out already, it waits for that
probe's verdict and then follows it: sent if the endpoint answered, skipped if
the probe failed, since that failure is news from after the replay was asked.
So a replay right after a recovery probes the endpoint once and then flows,
where before its letters were skipped, and parked again as ``circuit open``
by subscriptions without retries; and a replay into an outage that goes on
costs one probe, not one request per letter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from streams.delivery.outcome import ErrorKind

__all__ = ["TRIPPING", "Breaker", "Decision"]

#: Failures that cost a request slot for long and say the endpoint is unreachable.
TRIPPING: frozenset[ErrorKind] = frozenset(
    {
        ErrorKind.CONNECT_TIMEOUT,
        ErrorKind.READ_TIMEOUT,
        ErrorKind.WRITE_TIMEOUT,
        ErrorKind.POOL_TIMEOUT,
        ErrorKind.TOTAL_TIMEOUT,
        ErrorKind.CONNECT_ERROR,
        ErrorKind.CONNECTION_RESET,
        ErrorKind.DNS_ERROR,
        ErrorKind.TLS_ERROR,
    }
)

Decision = Literal["send", "probe", "skip", "wait"]


@dataclass(slots=True)
class Breaker:
    threshold: int
    base_s: float
    max_s: float
    failures: int = 0  # consecutive tripping failures while closed
    trips: int = 0  # openings since the breaker was last closed
    open_until: float | None = None
    probe_out: bool = False
    probe_until: float = 0.0  # when the probe out now times out at the latest
    opened_at: float | None = None  # when the verdict that holds it open came

    @property
    def closed(self) -> bool:
        return self.open_until is None

    @property
    def idle(self) -> bool:
        """Closed with no failure counted: the breaker can be forgotten."""
        return self.open_until is None and self.failures == 0

    def blocks(self, now: float) -> bool:
        """True while nothing may be sent (open and not due a probe, or a probe out)."""
        if self.open_until is None:
            return False
        return self.probe_out or now < self.open_until

    def predates(self, asked_at: float | None) -> bool:
        """True when the breaker was opened before ``asked_at``, the time an operator asked
        for a replay (None: not a replay): its verdict is older than the request."""
        return asked_at is not None and self.opened_at is not None and self.opened_at <= asked_at

    def admit(
        self, now: float, timeout_s: float = 0.0, *, asked_at: float | None = None
    ) -> Decision:
        """``send`` (closed), ``probe`` (the one request after the open time), or ``skip``.

        ``timeout_s``: the request's timeout, so the breaker knows when a probe's
        verdict is due at the latest. ``asked_at``: when the operator asked for the
        replay this delivery is; if the breaker :meth:`predates` it, the delivery is
        the ``probe`` at once, or must ``wait`` for the verdict of the probe out."""
        if self.open_until is None:
            return "send"
        if self.predates(asked_at):
            if self.probe_out:
                return "wait"
        elif self.probe_out or now < self.open_until:
            return "skip"
        self.probe_out = True
        self.probe_until = now + timeout_s
        return "probe"

    def reopens_in(self, now: float) -> float:
        """Seconds until a request may go out again (0.0 when closed).

        While a probe is out: until its timeout, plus the open time that follows
        if it fails (the earliest the next probe can go). Open and already due a
        probe: the first open time (another delivery is about to be the probe)."""
        if self.open_until is None:
            return 0.0
        if self.probe_out:
            return max(0.0, self.probe_until - now) + self.open_for(self.trips + 1)
        if now >= self.open_until:
            return self.base_s
        return self.open_until - now

    def record(self, now: float, *, tripping: bool, probe: bool) -> bool:
        """Count one request's result; True when this result opened the breaker."""
        if not tripping:
            self.failures = 0
            self.trips = 0
            self.open_until = self.opened_at = None
            self.probe_out = False
            return False
        if self.open_until is None:
            self.failures += 1
            if self.failures >= self.threshold:
                self._open(now)
                return True
            return False
        if probe:
            self.probe_out = False
            self._open(now)
            return True
        return False  # sent before the breaker opened: already counted in spirit

    def _open(self, now: float) -> None:
        self.trips += 1
        self.open_until = now + self.open_for(self.trips)
        self.opened_at = now

    def open_for(self, trips: int) -> float:
        """Seconds the breaker stays open at its ``trips``-th opening in a row."""
        return min(self.max_s, self.base_s * 2.0 ** min(trips - 1, 30))
