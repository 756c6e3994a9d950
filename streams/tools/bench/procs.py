"""The processes of a run: broker, workers, receivers, load tools; all stopped by PID.

Every child is started from the main thread through :class:`Processes`, which
remembers it and stops it (SIGTERM, then SIGKILL) when the run ends, also on
errors and at interpreter exit. On Linux each child also asks the kernel for
SIGTERM if the harness itself dies (``PR_SET_PDEATHSIG``), so a SIGKILLed
harness does not leave workers behind. Everything binds and connects to
127.0.0.1 only.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from streams.config import Settings
from streams.tools.bench.config import BenchConfigError, BenchFailed

HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


def free_port_pair(attempts: int = 50) -> int:
    """A port p with p and p + 1 both free (the local broker listens on both)."""
    for _ in range(attempts):
        port = free_port()
        if port < 65535 and port_is_free(port + 1):
            return port
    raise BenchFailed("could not find two adjacent free ports on 127.0.0.1")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


# -- /proc sampling ------------------------------------------------------------------


def rss_mb(pid: int) -> float | None:
    """Resident memory of ``pid`` in MiB, or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds used by ``pid`` so far (all threads)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    try:
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (IndexError, ValueError):
        return None


#: Thread names (``/proc/PID/task/TID/comm``, cut to 15 bytes) of HotSpot's JIT compilers.
JIT_THREADS = ("C1 CompilerThre", "C2 CompilerThre")


def jit_cpu_seconds(pid: int) -> float | None:
    """CPU seconds a JVM's JIT compiler threads used so far (0 for another process; None:
    gone).

    A compiler thread that HotSpot retired takes its time with it, so this can only
    undercount (JDK 17 keeps at least one thread of each compiler).
    """
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    total = 0.0
    for task in tasks:
        try:
            if not (task / "comm").read_text().startswith(JIT_THREADS):
                continue
            fields = (task / "stat").read_text().rsplit(")", 1)[-1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            continue
    return total


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


# -- the registry ----------------------------------------------------------------------


class Processes:
    """Start children and stop every one of them by PID, whatever happens."""

    def __init__(self) -> None:
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._main = threading.main_thread()
        atexit.register(self.stop_all)

    def start(
        self,
        name: str,
        argv: list[str],
        *,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        if threading.current_thread() is not self._main:
            # PR_SET_PDEATHSIG fires when the *thread* that forked exits.
            raise RuntimeError("children are started from the main thread only")
        out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
        try:
            proc = subprocess.Popen(
                argv,
                env=dict(env) if env is not None else None,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                start_new_session=True,  # the harness decides when children stop
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        finally:
            if log is not None and not isinstance(out, int):
                out.close()
        self._procs.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
        self._procs = [(n, p) for n, p in self._procs if p is not proc]

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL: no shutdown, no commit."""
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        self._procs = [(n, p) for n, p in self._procs if p is not proc]

    def stop_all(self, timeout_s: float = 20.0) -> None:
        procs = list(self._procs)
        for _name, proc in procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for _name, proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(10)
        self._procs = []


# -- the broker ----------------------------------------------------------------------


@dataclass
class Broker:
    """The broker of a run: the user's (never touched) or a private LocalKafka."""

    bootstrap: str
    own: bool
    version: str
    local: Any = None  # LocalKafka when own
    pid: int | None = None  # for CPU sampling (and, when own, for SIGKILL)
    kills: int = 0

    def refresh_pid(self) -> None:
        if self.local is not None:
            self.pid = self.local.status().pid

    def sigkill(self) -> float:
        """SIGKILL the private broker; returns when it is gone. Never the user's broker."""
        if not self.own or self.local is None:
            raise BenchFailed("refusing to kill a broker the harness did not start")
        self.refresh_pid()
        if self.pid is None:
            raise BenchFailed("the private broker is not running")
        pid = self.pid
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and alive(pid):
            time.sleep(0.05)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        self.kills += 1
        return time.time()

    def restart(self) -> float:
        """Start the private broker again on the same data; seconds until it answered."""
        started = time.monotonic()
        self.local.start()
        self.refresh_pid()
        return time.monotonic() - started

    def stop(self) -> None:
        if self.own and self.local is not None:
            with contextlib.suppress(Exception):
                self.local.stop(timeout_s=30)


def answers(bootstrap: str, timeout_s: float) -> bool:
    from streams.errors import KafkaUnavailableError
    from streams.kafka.topics import check_reachable

    settings = Settings.from_env({"STREAMS_KAFKA_BOOTSTRAP": bootstrap})
    try:
        check_reachable(settings, timeout_s=timeout_s)
    except KafkaUnavailableError:
        return False
    return True


def check_explicit_broker(environ: Mapping[str, str] | None = None, timeout_s: float = 5.0) -> None:
    """Fail at once when STREAMS_KAFKA_BOOTSTRAP names a broker that does not answer."""
    from streams.tools.bench.config import explicit_bootstrap

    configured = explicit_bootstrap(environ)
    if configured is not None and not answers(configured, timeout_s):
        raise BenchConfigError(
            f"STREAMS_KAFKA_BOOTSTRAP={configured!r}: no Kafka broker answers there within "
            f"{timeout_s:g}s. Start it, point the variable at a running broker, or unset it "
            "so the bench starts its own local broker"
        )


def _local_version() -> str:
    from streams.kafka.local import kafka_version

    return kafka_version()


#: Settings of the local broker that a private broker takes from the bench's environment.
BROKER_SETTINGS = ("STREAMS_KAFKA_HEAP", "STREAMS_KAFKA_JAVA_OPTS", "STREAMS_KAFKA_BROKER_CONFIG")


def start_private_broker(state_dir: Path, say: Callable[[str], None]) -> Broker:
    """A LocalKafka on two free ports with its data under ``state_dir``."""
    from streams.kafka.local import LocalKafka

    port = free_port_pair()
    settings = Settings.from_env(
        {
            "STREAMS_KAFKA_BOOTSTRAP": f"{HOST}:{port}",
            "STREAMS_STATE_DIR": str(state_dir),
            # The broker's own knobs pass through, so a run can measure them.
            **{var: os.environ[var] for var in BROKER_SETTINGS if os.environ.get(var, "").strip()},
        }
    )
    local = LocalKafka(settings)
    say(f"starting a private Kafka broker on {HOST}:{port} (data in {local.home})")
    status, _ = local.start()
    return Broker(
        bootstrap=f"{HOST}:{port}",
        own=True,
        version=_local_version(),
        local=local,
        pid=status.pid,
    )


def find_broker(
    run_dir: Path, say: Callable[[str], None], *, private: bool = False, timeout_s: float = 5.0
) -> Broker:
    """The user's broker if it answers (or the configured one, which must), else a private one."""
    from streams.tools.bench.config import explicit_bootstrap

    if private:
        return start_private_broker(run_dir / "kafka-state", say)
    configured = explicit_bootstrap()
    bootstrap = configured or Settings.from_env({}).kafka_bootstrap
    if answers(bootstrap, timeout_s):
        return Broker(
            bootstrap=bootstrap,
            own=False,
            version=_describe_version(bootstrap),
            pid=_pid_of(bootstrap),
        )
    if configured is not None:
        check_explicit_broker(timeout_s=timeout_s)  # raises with the clear message
    return start_private_broker(run_dir / "kafka-state", say)


def _default_local(bootstrap: str) -> Any:
    """The LocalKafka of the default state dir, if it serves ``bootstrap`` (read only)."""
    from streams.kafka.local import LocalKafka

    try:
        local = LocalKafka(Settings.from_env({"STREAMS_KAFKA_BOOTSTRAP": bootstrap}))
    except Exception:
        return None
    status = local.status()
    return local if status.running else None


def _pid_of(bootstrap: str) -> int | None:
    local = _default_local(bootstrap)
    return local.status().pid if local is not None else None


def _describe_version(bootstrap: str) -> str:
    if _default_local(bootstrap) is not None:
        return _local_version()
    return "unknown (a broker the bench did not start)"


# -- workers ---------------------------------------------------------------------------


@dataclass
class Worker:
    """One ``streams worker`` process of a stack."""

    index: int
    env: dict[str, str]
    state_dir: Path
    log: Path
    port: int
    procs: Processes
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    kills: int = 0

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def start(self, *, wait: bool = True, timeout_s: float = 120.0) -> float:
        """Start ``streams worker``; with ``wait``, seconds until /healthz said ok."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.started_at = time.time()
        self.proc = self.procs.start(
            f"worker-{self.index}",
            [sys.executable, "-m", "streams", "worker"],
            env=self.env,
            log=self.log,
        )
        if not wait:
            return 0.0
        return self.wait_healthy(timeout_s)

    def healthy(self) -> bool:
        try:
            return httpx.get(self.base_url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def health(self) -> dict[str, Any]:
        try:
            answer: dict[str, Any] = httpx.get(self.base_url + "/healthz", timeout=5).json()
        except (httpx.HTTPError, ValueError):
            return {}
        return answer

    def wait_healthy(self, timeout_s: float = 120.0) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                code = None if self.proc is None else self.proc.returncode
                raise BenchFailed(f"worker {self.index} exited with {code}:\n{self.tail()}")
            if self.healthy():
                return time.time() - self.started_at
            time.sleep(0.2)
        raise BenchFailed(f"worker {self.index} not healthy within {timeout_s:g}s:\n{self.tail()}")

    def exited(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def kill(self) -> None:
        if self.proc is not None:
            self.procs.kill(self.proc)
            self.kills += 1

    def stop(self) -> None:
        if self.proc is not None:
            self.procs.stop(self.proc, timeout_s=30)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


# -- receivers -------------------------------------------------------------------------


@dataclass
class ReceiverNode:
    index: int
    control_port: int
    ledger: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None


@dataclass
class Receivers:
    """N receiver processes sharing one port (SO_REUSEPORT), each with its own ledger."""

    procs: Processes
    run_dir: Path
    count: int
    port: int = field(default_factory=free_port)
    nodes: list[ReceiverNode] = field(default_factory=list)

    def start(self, timeout_s: float = 20.0) -> Receivers:
        for i in range(self.count):
            node = ReceiverNode(
                index=i,
                control_port=free_port(),
                ledger=self.run_dir / f"ledger-{i}.jsonl",
                log=self.run_dir / f"receiver-{i}.log",
            )
            node.proc = self.procs.start(
                f"receiver-{i}",
                [
                    sys.executable,
                    "-m",
                    "streams.tools.bench.node",
                    "--port",
                    str(self.port),
                    "--control-port",
                    str(node.control_port),
                    "--ledger",
                    str(node.ledger),
                ],
                log=node.log,
            )
            self.nodes.append(node)
        deadline = time.monotonic() + timeout_s
        for node in self.nodes:
            while True:
                if node.proc is not None and node.proc.poll() is not None:
                    raise BenchFailed(f"receiver {node.index} exited; see {node.log}")
                try:
                    httpx.get(f"http://{HOST}:{node.control_port}/_stats", timeout=1)
                    break
                except httpx.HTTPError:
                    if time.monotonic() > deadline:
                        raise BenchFailed(
                            f"receiver {node.index} did not start; see {node.log}"
                        ) from None
                    time.sleep(0.1)
        return self

    def url(self, name: str) -> str:
        return f"http://{HOST}:{self.port}/hooks/{name}"

    def configure(self, name: str, **behaviour: Any) -> None:
        """Set an endpoint's behaviour on every node (``name="*"``: the default)."""
        for node in self.nodes:
            resp = httpx.post(
                f"http://{HOST}:{node.control_port}/_control/endpoints/{name}",
                json=behaviour,
                timeout=10,
            )
            if resp.status_code != 200:
                raise BenchFailed(f"receiver {node.index} refused {behaviour}: {resp.text}")

    @property
    def ledgers(self) -> list[Path]:
        return [n.ledger for n in self.nodes]

    @property
    def pids(self) -> list[int]:
        return [p for p in (n.pid for n in self.nodes) if p is not None]
