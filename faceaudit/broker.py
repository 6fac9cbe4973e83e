"""A real single-node Apache Kafka broker (KRaft) for the demo, the tests and CI.

There is no Docker on the target machines, so the broker runs straight from the
Kafka jars on Maven Central: ``deploy/local/pom.xml`` resolves them once into a
jar cache, and :class:`LocalBroker` formats a KRaft data dir and launches
``kafka.Kafka`` as a detached JVM whose state (config, data, log, pid) lives
under the project's state dir.  It is secured as a real cluster would be
(faceaudit/broker_security.py): SASL_SSL with SCRAM users for the clients, TLS
with client certificates for the controller, and ACLs with no access where no
ACL is found; the clients find its credentials through ``kafka/client.json``
(core/local_kafka.py).  Only the broker a given state dir started is
ever stopped: the pid file is trusted only if that pid's command line is
``kafka.Kafka`` with this state dir's config file.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka.admin import KafkaAdminClient, ScramMechanism, UserScramCredentialUpsertion
from kafka.errors import KafkaError, TopicAlreadyExistsError

from core.clients import KafkaConfig, kafka_admin
from core.errors import FaceauditError
from core.local_kafka import ROLE_USERS, write_client_file
from core.private_files import private_dir, write_private
from faceaudit.broker_security import BrokerSecurity, acls_for
from schemas.topics import (
    COMPACTED_TOPICS,
    DEAD_LETTER_TOPIC,
    DIGESTS_TOPIC,
    EVENTS_TOPIC,
    INPUT_TOPICS,
    KEYS_TOPIC,
    VIOLATION_TOPIC,
)

_REPO_ROOT = Path(__file__).resolve().parents[1]
_DEPLOY_DIR = _REPO_ROOT / "deploy" / "local"
_POM = _DEPLOY_DIR / "pom.xml"
_TEMPLATE = _DEPLOY_DIR / "server.properties.template"

_STARTED_LINE = "Kafka Server started"
# Written once the data dir was formatted with the SCRAM users: a data dir without
# it was formatted by an older, unsecured version and has no users to log in as.
_SECURED_MARKER = ".faceaudit-secured"
_SCRAM_ITERATIONS = 8192
_JAR_MARKER = ".kafka-version"
_JVM_OPTS = ("-Xms256m", "-Xmx768m", "-XX:+UseG1GC", "-Djava.awt.headless=true")
# The one-shot StorageTool runs for about a second: the C1 JIT alone starts it faster.
_TOOL_JVM_OPTS = ("-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
# slf4j-simple (the logging binding the pom adds) writes to stderr, i.e. broker.log;
# timestamps make the log usable when a start fails.
_LOG_OPTS = (
    "-Dorg.slf4j.simpleLogger.showDateTime=true",
    "-Dorg.slf4j.simpleLogger.dateTimeFormat=yyyy-MM-dd'T'HH:mm:ss.SSS",
)
_LOG_TAIL_LINES = 15
# Known causes of a failed start, recognised in broker.log, and what to tell the user.
_FAILURE_HINTS = {
    "Address already in use": "a port it needs is already in use",
    "UnsupportedClassVersionError": "Kafka 4 needs Java 17 or newer",
    "OutOfMemoryError": "the JVM ran out of memory",
}


class BrokerError(Exception):
    """The local broker could not be prepared, started or reached; the message says why."""


@dataclass
class BrokerStatus:
    """What ``faceaudit broker status`` reports about one state dir's broker."""

    running: bool
    pid: int | None
    bootstrap: str
    home: Path


class LocalBroker:
    """One single-node KRaft broker whose files all live under ``home``.

    ``home/kafka-libs`` (or ``libs_dir``) is the jar cache, filled once by Maven;
    ``home/kafka`` holds ``server.properties``, the ``data`` dir, ``broker.log``
    and ``broker.pid``.  ``libs_dir`` lets several homes (e.g. test runs) share
    one jar cache.
    """

    def __init__(
        self,
        home: Path,
        port: int = 9092,
        controller_port: int = 9093,
        partitions: int = 6,
        libs_dir: Path | None = None,
        plain_port: int | None = None,
    ) -> None:
        """`plain_port`: also listen there with SASL_PLAINTEXT (the benchmark's, to measure
        TLS's cost; the same users and ACLs)."""
        self.home = Path(home).resolve()
        self.port = port
        self.controller_port = controller_port
        self.plain_port = plain_port
        self.partitions = partitions
        self.libs_dir = Path(libs_dir).resolve() if libs_dir else self.home / "kafka-libs"
        self.kafka_dir = self.home / "kafka"
        self.config_path = self.kafka_dir / "server.properties"
        self.data_dir = self.kafka_dir / "data"
        self.log_path = self.kafka_dir / "broker.log"
        self.pid_path = self.kafka_dir / "broker.pid"
        self.security = BrokerSecurity(self.kafka_dir)
        # The broker this object launched, kept so its exit status is collected
        # (no zombie, no "still running" ResourceWarning) when this process stops it.
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """The ``host:port`` clients connect to."""
        return f"127.0.0.1:{self.port}"

    # ----------------------------------------------------------------- jars

    def ensure_jars(self) -> Path:
        """Return the jar cache dir, running Maven only if it is missing or for another version.

        The cache is filled in a temporary sibling dir and renamed into place, so
        an interrupted download never leaves a half-filled cache that looks complete,
        and jars of an older Kafka version never end up on the same classpath.
        """
        version = kafka_version()
        if _read_text(self.libs_dir / _JAR_MARKER) == version:
            return self.libs_dir
        mvn = _require_tool("mvn", "Maven ('mvn') is needed once to download the Kafka jars")
        self.libs_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".kafka-libs-", dir=self.libs_dir.parent))
        try:
            _run_maven(mvn, staging)
            (staging / _JAR_MARKER).write_text(version)
            staging.chmod(0o755)  # mkdtemp makes it private; the cache is not secret
            # Another process may have filled the cache meanwhile; keep its copy then.
            if _read_text(self.libs_dir / _JAR_MARKER) != version:
                shutil.rmtree(self.libs_dir, ignore_errors=True)
                staging.rename(self.libs_dir)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self.libs_dir

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 120) -> str:
        """Start the broker (or find it already running) and return its bootstrap address.

        Idempotent: a running broker of this home is reused, a stale pid file is
        dropped, an existing KRaft data dir is kept (so topics survive restarts).
        """
        deadline = _Deadline(timeout)
        pid = self._our_pid()
        if pid is not None:
            self._wait_until_ready(pid, None, deadline)
            self._describe_for_clients()
            return self.bootstrap
        self.pid_path.unlink(missing_ok=True)
        self._check_ports_free()
        java = _java()
        libs = self.ensure_jars()
        self.security.ensure()
        self._write_config()
        self._format_storage(java, libs)
        self._process = self._launch(java, libs)
        try:
            self._wait_until_ready(self._process.pid, self._process, deadline)
            self._describe_for_clients()
            self._grant_acls(self.security.users())
        except (BrokerError, FaceauditError):
            _terminate(self._process.pid, self._process, grace=5)
            self.pid_path.unlink(missing_ok=True)
            raise
        return self.bootstrap

    def kafka(
        self, role: str = "admin", user: str | None = None, timeout: float = 15.0
    ) -> KafkaConfig:
        """How a client reaches this broker as `role`'s user (or as `user`)."""
        name = user or ROLE_USERS[role]
        return KafkaConfig(
            self.bootstrap,
            timeout,
            user=name,
            password=self.security.password(name),
            ca_file=str(self.security.ca_file),
        )

    def kafka_without_tls(self, role: str) -> KafkaConfig:
        """`kafka(role)` through the SASL_PLAINTEXT listener (`plain_port`)."""
        if self.plain_port is None:
            raise BrokerError("this broker has no SASL_PLAINTEXT listener")
        name = ROLE_USERS[role]
        return KafkaConfig(
            f"127.0.0.1:{self.plain_port}",
            user=name,
            password=self.security.password(name),
            security_protocol="SASL_PLAINTEXT",
        )

    def add_user(self, name: str, role: str) -> Path:
        """Create a SCRAM user with a new random password and the ACLs of `role`.

        The broker must be running. Returns the password's file (owner-only).
        """
        try:
            password_file = self.security.add_user(name, role)
        except ValueError as exc:
            raise BrokerError(str(exc)) from None
        try:
            self._add_scram(name)
            self._grant_acls({name: role})
        except BaseException:
            users = self.security.users()
            users.pop(name, None)
            self.security._write_users(users)
            password_file.unlink(missing_ok=True)
            raise
        self._describe_for_clients()
        return password_file

    def stop(self, timeout: float = 30) -> bool:
        """Stop this home's broker: SIGTERM, then SIGKILL after ``timeout`` seconds.

        Returns False if it was not running.  A pid file naming any other process
        (a dead pid reused by the OS, another broker) is removed but never signalled.
        """
        pid = self._our_pid()
        self.pid_path.unlink(missing_ok=True)
        if pid is None:
            return False
        process = self._process if self._process and self._process.pid == pid else None
        _terminate(pid, process, grace=timeout)
        return True

    def status(self) -> BrokerStatus:
        """Whether this home's broker process is alive, by pid file and command line."""
        pid = self._our_pid()
        return BrokerStatus(
            running=pid is not None, pid=pid, bootstrap=self.bootstrap, home=self.home
        )

    # -------------------------------------------------------------- helpers

    def _our_pid(self) -> int | None:
        """The pid from the pid file, if that process is alive and is our broker."""
        text = _read_text(self.pid_path)
        if not text or not text.isdigit():
            return None
        pid = int(text)
        cmdline = _cmdline(pid)
        if cmdline is None or "kafka.Kafka" not in cmdline:
            return None
        return pid if str(self.config_path) in cmdline else None

    def _check_ports_free(self) -> None:
        for port in (self.port, self.controller_port):
            if not _port_free(port):
                raise BrokerError(
                    f"Port {port} on 127.0.0.1 is already in use by another process; "
                    "stop it or choose other ports for the local broker."
                )

    def _write_config(self) -> None:
        """Render server.properties, owner-only: it holds the broker's key and password."""
        template = string.Template(_TEMPLATE.read_text())
        self.data_dir.mkdir(parents=True, exist_ok=True)
        write_private(
            self.config_path,
            template.substitute(
                port=self.port,
                controller_port=self.controller_port,
                plain_listener=""
                if self.plain_port is None
                else f",PLAIN://127.0.0.1:{self.plain_port}",
                partitions=self.partitions,
                log_dir=self.data_dir,
                **self.security.template_values(),
            ),
        )

    def _format_storage(self, java: str, libs: Path) -> None:
        """Format the KRaft data dir once, with every user's SCRAM credential.

        Re-formatting would wipe nothing but is refused; a data dir formatted
        without users (by a version before the broker was secured) is moved
        aside to ``data.unsecured``, since nobody could log in to it.
        The passwords go to the JVM in an owner-only argument file, never on
        its command line (which any local user can read).
        """
        if (self.data_dir / "meta.properties").exists():
            if (self.data_dir / _SECURED_MARKER).exists():
                return
            aside = self.data_dir.with_name("data.unsecured")
            shutil.rmtree(aside, ignore_errors=True)
            self.data_dir.rename(aside)
            print(
                f"faceaudit: the local broker's data dir had no users; moved to {aside} "
                "and formatted anew. Its topics start again at offset 0: a store filled from "
                "the old ones (such as .faceaudit/clickhouse) is refused by the validator; "
                "move it aside too",
                file=sys.stderr,
            )
            self.data_dir.mkdir()
        arguments = [
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "--cluster-id",
            new_cluster_id(),
            "--config",
            str(self.config_path),
            *self.security.scram_arguments(),
        ]
        argument_file = self.kafka_dir / "format.args"
        write_private(argument_file, "\n".join(_java_quote(a) for a in arguments) + "\n")
        command = [java, *_TOOL_JVM_OPTS, "-cp", _classpath(libs), f"@{argument_file}"]
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
        finally:
            argument_file.unlink(missing_ok=True)
        if result.returncode != 0:
            raise BrokerError(
                f"Formatting the Kafka data dir {self.data_dir} failed: "
                f"{_tail(result.stdout + result.stderr)}"
            )
        (self.data_dir / _SECURED_MARKER).write_text("SCRAM users added at format time\n")

    def _describe_for_clients(self) -> None:
        write_client_file(
            self.home, self.bootstrap, self.security.ca_file, self.security.client_users()
        )

    def _grant_acls(self, users: dict[str, str]) -> None:
        grant_acls(self.kafka("admin"), users)

    def _add_scram(self, name: str) -> None:
        upsert = UserScramCredentialUpsertion(
            name,
            ScramMechanism.SCRAM_SHA_512,
            self.security.password(name),
            iterations=_SCRAM_ITERATIONS,
        )
        with _admin(self.kafka("admin"), 30_000) as admin:
            try:
                errors = admin.alter_user_scram_credentials([upsert])
            except KafkaError as exc:
                raise BrokerError(
                    f"Could not add user {name!r} on {self.bootstrap}: {exc}"
                ) from exc
        if errors.get(name):
            raise BrokerError(f"Kafka refused user {name!r}: {errors[name]}")

    def _launch(self, java: str, libs: Path) -> subprocess.Popen[bytes]:
        """Run the broker detached (own session), logging to broker.log; write the pid file."""
        if self.log_path.exists():
            self.log_path.replace(self.log_path.with_name(self.log_path.name + ".1"))
        command = [
            java,
            *_JVM_OPTS,
            *_LOG_OPTS,
            "-cp",
            _classpath(libs),
            "kafka.Kafka",
            str(self.config_path),
        ]
        private_dir(self.kafka_dir)
        with self.log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.kafka_dir,
                start_new_session=True,
            )
        self.pid_path.write_text(f"{process.pid}\n")
        return process

    def _wait_until_ready(
        self, pid: int, process: subprocess.Popen[bytes] | None, deadline: _Deadline
    ) -> None:
        """Wait for the "Kafka Server started" log line and an accepting listener."""
        while True:
            if not _alive(pid, process):
                raise BrokerError(self._failure("exited during startup"))
            if _STARTED_LINE in _read_text(self.log_path) and _accepts(self.port):
                return
            if deadline.passed():
                raise BrokerError(self._failure(f"did not start within {deadline.seconds:g} s"))
            time.sleep(0.25)

    def _failure(self, what: str) -> str:
        log = _read_text(self.log_path)
        hints = [hint for needle, hint in _FAILURE_HINTS.items() if needle in log]
        reason = f" ({'; '.join(hints)})" if hints else ""
        last_lines = f"last lines:\n{_tail(log)}" if log else "it is empty"
        return (
            f"The Kafka broker on {self.bootstrap} {what}{reason}; "
            f"see {self.log_path}, {last_lines}"
        )


def grant_acls(kafka: KafkaConfig, users: dict[str, str]) -> None:
    """Create the ACLs of each user's role, as an admin (an existing ACL changes nothing)."""
    acls = [acl for name, role in users.items() for acl in acls_for(name, role)]
    if not acls:
        return
    with _admin(kafka, 30_000) as admin:
        try:
            result = admin.create_acls(acls)
        except KafkaError as exc:
            raise BrokerError(f"Could not create the ACLs on {kafka.bootstrap}: {exc}") from exc
    if result["failed"]:
        raise BrokerError(f"Kafka refused ACLs on {kafka.bootstrap}: {result['failed'][0]}")


def ensure_topics(kafka: KafkaConfig, partitions: int = 6, timeout: float = 30) -> None:
    """Create the pipeline's topics if missing, and wait until every partition has a leader.

    Every topic gets ``partitions`` partitions; the consent and deployment
    registries are compacted (latest record per key is the current state); the
    events topic is stamped with broker time; the dead-letter and violation
    topics are created too.  Existing topics are left as they are.
    ``timeout`` bounds each request; reaching a broker waits ``kafka.timeout``.
    """
    timeout_ms = int(timeout * 1000)
    specs = _topic_specs(partitions)
    try:
        with _admin(kafka, timeout_ms) as admin:
            response = admin.create_topics(specs, timeout_ms=timeout_ms, raise_errors=False)
            _raise_for_create_errors(response)
            admin.wait_for_topics(list(specs), timeout_ms=timeout_ms)
    except KafkaError as exc:
        raise BrokerError(
            f"Could not create the topics on Kafka at {kafka.bootstrap}: {exc}"
        ) from exc


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """`count` different free ports (two free_port() calls may return the same one)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def new_cluster_id() -> str:
    """A random Kafka cluster id: a 16-byte Uuid, base64url without padding.

    Same rules as Kafka's ``Uuid.randomUuid()``: never starting with "-" (it
    would read as a command-line option).  Saves a JVM start for ``random-uuid``.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def kafka_version() -> str:
    """The Kafka version ``deploy/local/pom.xml`` resolves (single source of truth)."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = ET.parse(_POM).getroot().findtext("m:properties/m:kafka.version", namespaces=ns)
    if not version:
        raise BrokerError(f"{_POM} does not define the kafka.version property.")
    return version.strip()


# ------------------------------------------------------------------ internals


def _topic_specs(partitions: int) -> dict[str, dict[str, object]]:
    specs: dict[str, dict[str, object]] = {}
    for topic in (*INPUT_TOPICS, DEAD_LETTER_TOPIC, VIOLATION_TOPIC, DIGESTS_TOPIC, KEYS_TOPIC):
        spec: dict[str, object] = {"num_partitions": partitions, "replication_factor": 1}
        if topic in COMPACTED_TOPICS:
            spec["configs"] = {"cleanup.policy": "compact"}
        elif topic == EVENTS_TOPIC:
            # The broker, not the producer, stamps each event (contract, Time).
            spec["configs"] = {"message.timestamp.type": "LogAppendTime"}
        specs[topic] = spec
    return specs


@contextlib.contextmanager
def _admin(kafka: KafkaConfig, timeout_ms: int) -> Iterator[KafkaAdminClient]:
    admin = kafka_admin(kafka, client_id="faceaudit-admin", request_timeout_ms=timeout_ms)
    try:
        yield admin
    finally:
        admin.close()


def _raise_for_create_errors(response: dict[str, Any]) -> None:
    failures = [
        f"{topic['name']}: {topic.get('error_message') or topic['error_code']}"
        for topic in response["topics"]
        if topic["error_code"] not in (0, TopicAlreadyExistsError.errno)
    ]
    if failures:
        raise BrokerError(f"Kafka refused to create topics: {'; '.join(failures)}")


class _Deadline:
    """A point in time that remembers its timeout, for the error message."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._at = time.monotonic() + seconds

    def passed(self) -> bool:
        return time.monotonic() >= self._at


def _java() -> str:
    """The java binary: $JAVA_HOME/bin/java if set, else ``java`` on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and os.access(Path(java_home, "bin", "java"), os.X_OK):
        return str(Path(java_home, "bin", "java"))
    return _require_tool("java", "Java 17+ is needed to run the local Kafka broker")


def _require_tool(name: str, why: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise BrokerError(f"{why}, but '{name}' was not found on PATH.")
    return path


def _run_maven(mvn: str, target: Path) -> None:
    command = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(_POM),
        "dependency:copy-dependencies",
        f"-Dkafka.libs.dir={target}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise BrokerError(
            f"Maven could not download the Kafka jars (exit {result.returncode}): "
            f"{_tail(result.stdout + result.stderr)}"
        )


def _java_quote(argument: str) -> str:
    """One argument of a java @-file: in double quotes, backslashes and quotes escaped."""
    return '"' + argument.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _classpath(libs: Path) -> str:
    # The JVM expands a trailing "*" itself; no shell is involved.
    return str(libs / "*")


def _accepts(port: int) -> bool:
    """True if something accepts TCP connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _port_free(port: int) -> bool:
    """True if a listener could bind 127.0.0.1:port (SO_REUSEADDR, as the JVM binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


def _cmdline(pid: int) -> list[str] | None:
    """The argv of a live (non-zombie) process, or None; reads Linux /proc."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 3 of /proc/PID/stat, after the parenthesised command name, is the state.
    if stat.rpartition(")")[2].split()[0] == "Z" or not raw:
        return None
    return raw.decode(errors="replace").rstrip("\0").split("\0")


def _alive(pid: int, process: subprocess.Popen[bytes] | None) -> bool:
    """Whether our broker ``pid`` still runs; only ever called for a pid known to be ours.

    If it is a child of this process but ``process`` is not at hand (another
    LocalBroker object started it), its exit status is collected here so it does
    not linger as a zombie that looks alive.
    """
    if process is not None:
        return process.poll() is None
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return _cmdline(pid) is not None


def _terminate(pid: int, process: subprocess.Popen[bytes] | None, grace: float) -> None:
    """SIGTERM (Kafka shuts down cleanly on it), then SIGKILL after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _alive(pid, process) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid, process):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while _alive(pid, process):
            time.sleep(0.05)
    # When this process launched the broker (through another LocalBroker
    # object), collect its exit status so it leaves no zombie behind.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except FileNotFoundError:
        return ""


def _tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
