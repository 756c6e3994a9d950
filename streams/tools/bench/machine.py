"""How fast this machine runs while a benchmark runs: a reference loop and steal time.

The machine is a virtual one, shared: from one day to the next the same code has
measured 1x to 3x the CPU per attempt (docs/benchmarks.md). A CPU figure from one
run compares with another only together with the machine's speed in that run. So a
benchmark can time a fixed reference loop (``sum(range(10**6))``, the loop earlier
notes quote) in the same process, before and after its measurement, and read the
hypervisor's steal time from ``/proc/stat``:

- :func:`reference_ms`: the loop's CPU time, the best of a few runs;
- :func:`steal_share`: the share of the CPUs' time the hypervisor took (pure, from two
  ``/proc/stat`` ``cpu`` lines);
- :func:`at_reference`: a CPU figure scaled to the quiet-day speed, so a run on a slow
  day can be compared with a target set on a quiet one. It is an estimate: a loop of
  Python bytecode is slowed by a busy host somewhat differently from B-tree work.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

#: CPU milliseconds of ``sum(range(10**6))`` (best of several) on a quiet day here:
#: ``python3 -m timeit "sum(range(10**6))"`` gave 12 ms in the sessions that set and met
#: the CPU targets; 16-40 ms on slow days.
QUIET_REFERENCE_MS = 12.0
REFERENCE_RUNS = 7


def reference_ms(runs: int = REFERENCE_RUNS) -> float:
    """CPU milliseconds of the reference loop: the best of ``runs``. This thread's CPU
    only, so a run can sample it while other threads of its process work."""
    best = float("inf")
    for _ in range(max(1, runs)):
        start = time.thread_time()
        sum(range(10**6))
        best = min(best, time.thread_time() - start)
    return 1000 * best


def cpu_line(stat: str) -> list[int]:
    """The counters of the aggregate ``cpu`` line of ``/proc/stat``'s text."""
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            return [int(x) for x in fields[1:]]
    raise ValueError("no aggregate `cpu` line in /proc/stat")


def steal_share(before: list[int], after: list[int]) -> float | None:
    """The share (0-1) of all CPUs' time the hypervisor took between two ``cpu`` lines
    (user nice system idle iowait irq softirq steal ...); None if no time passed.
    ``guest`` and ``guest_nice`` are already counted in user and nice, so only the
    first eight counters add up to the total."""
    if len(before) < 8 or len(after) < 8:
        raise ValueError("a `cpu` line has at least 8 counters (steal is the 8th)")
    total = sum(after[:8]) - sum(before[:8])
    if total <= 0:
        return None
    return (after[7] - before[7]) / total


def read_cpu_line(path: Path = Path("/proc/stat")) -> list[int] | None:
    """The aggregate ``cpu`` counters now (None where there is no ``/proc/stat``)."""
    try:
        return cpu_line(path.read_text())
    except (OSError, ValueError):
        return None


def at_reference(value: float, reference: float, quiet: float = QUIET_REFERENCE_MS) -> float:
    """``value`` (a CPU cost measured while the reference loop took ``reference`` ms)
    scaled to a machine where it takes ``quiet`` ms."""
    if reference <= 0 or quiet <= 0:
        raise ValueError("reference times must be positive")
    return value * quiet / reference


@dataclass
class MachineWatch:
    """The reference loop before, during and after a measurement, and the steal between
    :meth:`start` and :meth:`stop`.

    The machine's speed changes within minutes (a run has seen 22 ms before and 30 ms
    after), so a run can also :meth:`sample` while it measures; the figure is scaled by
    the median of every sample. A sample costs about 0.2 s of this process's CPU, which
    :attr:`own_cpu_s` adds up so a run measuring its process's CPU can take it out.
    """

    samples: list[float] = field(default_factory=list)
    steal: float | None = None
    own_cpu_s: float = 0.0
    _cpu_before: list[int] | None = None

    def sample(self) -> float:
        start = time.thread_time()
        ms = reference_ms()
        self.own_cpu_s += time.thread_time() - start
        self.samples.append(ms)
        return ms

    def start(self) -> MachineWatch:
        self.sample()
        self._cpu_before = read_cpu_line()
        return self

    def stop(self) -> MachineWatch:
        after = read_cpu_line()
        if self._cpu_before is not None and after is not None:
            self.steal = steal_share(self._cpu_before, after)
        self.sample()
        return self

    @property
    def reference(self) -> float:
        """The median of the reference times sampled (ms)."""
        return float(statistics.median(self.samples))

    def describe(self, us_per_attempt: float) -> str:
        steal = "unknown" if self.steal is None else f"{100 * self.steal:.0f}%"
        return (
            f"machine: reference loop median {self.reference:.1f} ms of CPU "
            f"(min {min(self.samples):.1f}, max {max(self.samples):.1f}, "
            f"{len(self.samples)} samples; {QUIET_REFERENCE_MS:.0f} ms on a quiet day), "
            f"steal {steal} of the CPUs' time; at the quiet-day speed about "
            f"{at_reference(us_per_attempt, self.reference):.1f} us per attempt"
        )
