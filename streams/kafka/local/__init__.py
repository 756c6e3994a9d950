"""A real Apache Kafka broker for development and tests, run from Maven Central jars.

``streams kafka start``:

1. resolves the broker's runtime jars with Maven from ``pom.xml`` beside this
   file into a cache (``~/.cache/streams/kafka-<version>``; once per version),
2. formats KRaft storage under ``STREAMS_STATE_DIR/kafka`` on first use,
3. starts one combined broker+controller bound to 127.0.0.1 with a small heap,
4. waits until it answers metadata requests, then returns.

It only manages the process it started (tracked by a pid file). Production
clusters are just another ``STREAMS_KAFKA_BOOTSTRAP``; nothing else in the
package knows this module exists.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from streams.config import Settings
from streams.errors import LocalKafkaError

POM = Path(__file__).with_name("pom.xml")


def kafka_version() -> str:
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", POM.read_text())
    if not match:  # pragma: no cover - the pom is part of the package
        raise LocalKafkaError(f"{POM} names no kafka.version")
    return match.group(1)


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "streams" / f"kafka-{kafka_version()}"


@dataclass(frozen=True, slots=True)
class Status:
    running: bool
    pid: int | None
    bootstrap: str
    version: str
    log_file: Path
    data_dir: Path

    def describe(self) -> str:
        if self.running:
            return (
                f"Kafka {self.version} is running (pid {self.pid}) at {self.bootstrap}; "
                f"log: {self.log_file}"
            )
        return f"Kafka {self.version} is not running (data: {self.data_dir}; log: {self.log_file})"


def new_cluster_id(random_uuid: Callable[[], uuid.UUID] = uuid.uuid4) -> str:
    """A KRaft cluster id: base64url of a random UUID, never starting with ``-``.

    The storage tool's argument parser reads an id starting with ``-`` as an
    option ("argument --cluster-id/-t: expected one argument"); one random
    id in 32 does, so such ids are drawn again (Kafka's own Uuid does the same).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(random_uuid().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class LocalKafka:
    """Start, stop and inspect the development broker of one state directory."""

    def __init__(
        self,
        settings: Settings,
        *,
        sasl_users: Mapping[str, str] | None = None,
        tls_keystore: Path | None = None,
        tls_client_ca: Path | None = None,
    ) -> None:
        """Extra listeners, to test the clients' security settings against a real broker.

        ``sasl_users`` (name → password): also listen on ``sasl_port`` (the port
        after the controller's) with SASL_PLAINTEXT/PLAIN. ``tls_keystore``: a PEM
        file with the broker's unencrypted PKCS#8 private key followed by its
        certificate chain; also listen on ``tls_port`` (the one after that) with SSL.
        ``tls_client_ca``: a PEM CA certificate; the SSL listener then requires a
        client certificate signed by it (mutual TLS).
        """
        self.settings = settings
        self.sasl_users = dict(sasl_users or {})
        self.tls_keystore = tls_keystore
        self.tls_client_ca = tls_client_ca
        self.home = (settings.state_dir / "kafka").resolve()
        self.data_dir = self.home / "data"
        self.log_file = self.home / "server.log"
        self.pid_file = self.home / "kafka.pid"
        self.host, self.port = self._listen_address(settings.kafka_bootstrap)
        self.controller_port = self.port + 1
        self.sasl_port = self.port + 2
        self.tls_port = self.port + 3

    @staticmethod
    def _listen_address(bootstrap: str) -> tuple[str, int]:
        first = bootstrap.split(",")[0].strip()
        host, _, port = first.rpartition(":")
        if host not in ("127.0.0.1", "localhost") or not port.isdigit():
            raise LocalKafkaError(
                f"STREAMS_KAFKA_BOOTSTRAP={bootstrap!r}: the local broker only runs on "
                "127.0.0.1:<port>; point STREAMS_KAFKA_BOOTSTRAP there, or use your cluster "
                "without `streams kafka start`"
            )
        return "127.0.0.1", int(port)

    # -- jars -----------------------------------------------------------------

    def resolve_jars(self) -> Path:
        """Resolve the broker's classpath with Maven (cached by the pom's hash)."""
        target = cache_dir()
        stamp = target / ".pom-sha256"
        digest = hashlib.sha256(POM.read_bytes()).hexdigest()
        if stamp.is_file() and stamp.read_text() == digest:
            return target
        mvn = shutil.which("mvn")
        if mvn is None:
            raise LocalKafkaError(
                "Maven (`mvn`) is not on PATH: install it (apt-get install maven) so the "
                "broker's jars can be resolved from Maven Central"
            )
        staging = target.with_name(target.name + f".tmp{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        proc = subprocess.run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(POM),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={staging}",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            raise LocalKafkaError(f"Maven could not resolve the Kafka jars:\n{tail}")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        stamp.write_text(digest)
        return target

    # -- process --------------------------------------------------------------

    def _pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        # Only a process we started: a java running kafka.Kafka with our config.
        if b"kafka.Kafka" in cmdline and str(self.home).encode() in cmdline:
            return pid
        return None

    def status(self) -> Status:
        pid = self._pid()
        return Status(
            running=pid is not None,
            pid=pid,
            bootstrap=f"{self.host}:{self.port}",
            version=kafka_version(),
            log_file=self.log_file,
            data_dir=self.data_dir,
        )

    def _port_in_use(self, port: int) -> bool:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            return sock.connect_ex((self.host, port)) == 0

    def _listener_lines(self) -> list[str]:
        listeners = [
            f"PLAINTEXT://{self.host}:{self.port}",
            f"CONTROLLER://{self.host}:{self.controller_port}",
        ]
        advertised = [f"PLAINTEXT://{self.host}:{self.port}"]
        protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT"]
        extra: list[str] = []
        if self.sasl_users:
            listeners.append(f"SASL_PLAINTEXT://{self.host}:{self.sasl_port}")
            advertised.append(f"SASL_PLAINTEXT://{self.host}:{self.sasl_port}")
            protocols.append("SASL_PLAINTEXT:SASL_PLAINTEXT")
            users = " ".join(
                f'user_{name}="{password}"' for name, password in self.sasl_users.items()
            )
            extra = [
                "sasl.enabled.mechanisms=PLAIN",
                "listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN",
                "listener.name.sasl_plaintext.plain.sasl.jaas.config="
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};",
            ]
        if self.tls_keystore is not None:
            listeners.append(f"SSL://{self.host}:{self.tls_port}")
            advertised.append(f"SSL://{self.host}:{self.tls_port}")
            protocols.append("SSL:SSL")
            extra += [
                "listener.name.ssl.ssl.keystore.type=PEM",
                f"listener.name.ssl.ssl.keystore.location={self.tls_keystore.resolve()}",
            ]
            if self.tls_client_ca is None:
                extra.append("listener.name.ssl.ssl.client.auth=none")
            else:
                extra += [
                    "listener.name.ssl.ssl.client.auth=required",
                    "listener.name.ssl.ssl.truststore.type=PEM",
                    f"listener.name.ssl.ssl.truststore.location={self.tls_client_ca.resolve()}",
                ]
        return [
            f"listeners={','.join(listeners)}",
            f"advertised.listeners={','.join(advertised)}",
            f"listener.security.protocol.map={','.join(protocols)}",
            *extra,
        ]

    def _extra_config(self) -> list[str]:
        """STREAMS_KAFKA_BROKER_CONFIG's lines: a later line of a key wins in the file."""
        return [f"{key}={value}" for key, value in self.settings.kafka_broker_config]

    def _write_config(self) -> Path:
        self.home.mkdir(parents=True, exist_ok=True)
        props = self.home / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{self.host}:{self.controller_port}",
                    *self._listener_lines(),
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    f"log.dirs={self.data_dir}",
                    "num.partitions=1",
                    "auto.create.topics.enable=false",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=6",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "log.retention.check.interval.ms=60000",
                    *self._extra_config(),
                    "",
                ]
            )
        )
        log4j = self.home / "log4j2.properties"
        log4j.write_text(
            "\n".join(
                [
                    "rootLogger.level = INFO",
                    "rootLogger.appenderRef.file.ref = FILE",
                    "appender.file.type = File",
                    "appender.file.name = FILE",
                    f"appender.file.fileName = {self.log_file}",
                    "appender.file.layout.type = PatternLayout",
                    "appender.file.layout.pattern = [%d] %p %m (%c)%n",
                    "logger.kafka.name = kafka",
                    "logger.kafka.level = INFO",
                    "logger.state.name = state.change.logger",
                    "logger.state.level = WARN",
                    "",
                ]
            )
        )
        return props

    def _java(self) -> str:
        java_home = os.environ.get("JAVA_HOME")
        java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
        if not java:
            raise LocalKafkaError("Java (17 or newer) is not on PATH; Kafka 4.x needs it")
        return java

    def _classpath(self, jars: Path) -> str:
        return str(jars / "*")

    def format_storage(self, java: str, jars: Path, props: Path) -> None:
        if (self.data_dir / "meta.properties").is_file():
            return
        cluster_id = new_cluster_id()
        proc = subprocess.run(
            [
                java,
                "-cp",
                self._classpath(jars),
                f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(props),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise LocalKafkaError(
                f"formatting Kafka storage in {self.data_dir} failed: "
                f"{(proc.stdout + proc.stderr).strip()[-2000:]}"
            )

    def start(self, timeout_s: float = 90.0) -> tuple[Status, bool]:
        """Start the broker and wait for it. Returns (status, started_now)."""
        current = self.status()
        if current.running:
            return current, False
        ports = (self.port, self.controller_port) + ((self.sasl_port,) if self.sasl_users else ())
        ports += (self.tls_port,) if self.tls_keystore is not None else ()
        for port in ports:
            if self._port_in_use(port):
                raise LocalKafkaError(
                    f"port {port} on {self.host} is already in use by another process: stop it, "
                    "or choose another port with STREAMS_KAFKA_BOOTSTRAP=127.0.0.1:<port>"
                )
        jars = self.resolve_jars()
        java = self._java()
        props = self._write_config()
        self.format_storage(java, jars, props)
        stdout = open(self.home / "stdout.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            [
                java,
                f"-Xms{self.settings.kafka_heap}",
                f"-Xmx{self.settings.kafka_heap}",
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.home / 'log4j2.properties'}",
                f"-Dkafka.logs.dir={self.home}",
                *self.settings.kafka_java_opts,  # last: a later option wins
                "-cp",
                self._classpath(jars),
                "kafka.Kafka",
                str(props),
            ],
            stdout=stdout,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # not killed by the terminal's ^C; `stop` ends it
        )
        stdout.close()
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LocalKafkaError(
                    f"Kafka exited with code {proc.returncode} during start; see {self.log_file} "
                    f"and {self.home / 'stdout.log'}:\n{self._tail()}"
                )
            if self._answers_metadata():
                return self.status(), True
            time.sleep(0.5)
        self.stop()
        raise LocalKafkaError(
            f"Kafka did not answer metadata requests within {timeout_s:g}s; see {self.log_file}"
        )

    def _answers_metadata(self) -> bool:
        from confluent_kafka.admin import AdminClient

        if not self._port_in_use(self.port):
            return False
        admin = AdminClient({"bootstrap.servers": f"{self.host}:{self.port}"})
        try:
            admin.list_topics(timeout=2)
        except Exception:
            return False
        return True

    def _tail(self, lines: int = 20) -> str:
        for path in (self.home / "stdout.log", self.log_file):
            with contextlib.suppress(OSError):
                text = path.read_text(errors="replace").strip()
                if text:
                    return "\n".join(text.splitlines()[-lines:])
        return "(no output)"

    def stop(self, timeout_s: float = 60.0) -> bool:
        """Stop the broker we started (SIGTERM, then SIGKILL after the timeout).

        Returns False when it was not running.
        """
        pid = self._pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not Path(f"/proc/{pid}").exists() or _is_zombie(pid):
                break
            time.sleep(0.2)
        else:
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        self.pid_file.unlink(missing_ok=True)
        return True


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"
