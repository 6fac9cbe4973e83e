"""The benchmark's own world: a temp dir, a broker on free ports, and the processes it starts.

Nothing is shared with `make demo` or the tests except the Kafka jar cache.
`Cluster` is a context manager: on leaving it, even through an error or
Ctrl-C, every process it started is stopped, then the broker, then the temp
dir (its chDB stores and Kafka data) is removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from bench import REPO_ROOT
from core.clients import KafkaConfig
from faceaudit.broker import LocalBroker, ensure_topics, free_ports
from faceaudit.keys import new_key_record, publish, write_private_key

JAR_CACHE = REPO_ROOT / ".faceaudit" / "kafka-libs"
CLI = (sys.executable, "-m", "faceaudit.cli")


class Cluster:
    """A broker and a temp dir of stores and logs; the faceaudit processes started in it."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="faceaudit-bench-"))
        port, controller_port, plain_port = free_ports(3)
        self.broker = LocalBroker(
            self.root / "kafka-home",
            port=port,
            controller_port=controller_port,
            libs_dir=JAR_CACHE,
            plain_port=plain_port,  # only to measure what TLS costs a consumer
        )
        self.bootstrap = self.broker.bootstrap
        self._children: list[subprocess.Popen] = []

    def kafka_as(self, role: str) -> KafkaConfig:
        """How a client reaches the bench's (secured) broker as `role`'s user."""
        return self.broker.kafka(role)

    def kafka_without_tls(self, role: str) -> KafkaConfig:
        """`kafka_as(role)` on the broker's SASL_PLAINTEXT listener: SCRAM and ACLs, no TLS."""
        return self.broker.kafka_without_tls(role)

    @property
    def kafka(self) -> KafkaConfig:
        """The admin's: it may do all a bench step needs."""
        return self.kafka_as("admin")

    def __enter__(self) -> Cluster:
        try:
            self.broker.start()
            # The commands the bench runs, in this process and in children, find
            # the broker's credentials (their role's user) through this.
            os.environ["FACEAUDIT_BROKER_HOME"] = str(self.broker.home)
            ensure_topics(self.kafka)
            # The validators it starts sign their digests with an auditor key of its own.
            os.environ["FACEAUDIT_AUDITOR_KEY"] = str(self._auditor_key())
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        for child in self._children:
            stop(child)
        try:
            self.broker.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _auditor_key(self) -> Path:
        record, private = new_key_record("auditor", None, None, datetime.now(UTC))
        publish(self.kafka_as("operator"), record)
        return write_private_key(private, self.root / "keys", record["key_id"])

    def store(self, name: str) -> str:
        """The DSN of a new, empty chDB store under the temp dir."""
        return f"chdb://{self.root / 'stores' / name}"

    @staticmethod
    def group(name: str) -> str:
        """A consumer group nobody used before."""
        return f"faceaudit-bench-{name}-{uuid.uuid4().hex[:8]}"

    def faceaudit(
        self, *args: str, log_name: str, profile_to: Path | None = None
    ) -> subprocess.Popen:
        """Start `faceaudit ARGS`; stdout and stderr go to files under the temp dir.

        `profile_to`: run it under pyinstrument, which writes a text report there.
        """
        command = [*CLI, *args]
        if profile_to is not None:
            profile_to.parent.mkdir(parents=True, exist_ok=True)
            profiler = [sys.executable, "-m", "pyinstrument", "-r", "text", "-o", str(profile_to)]
            command = [*profiler, "-m", "faceaudit.cli", *args]
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        with (
            open(logs / f"{log_name}.out", "w") as out,
            open(logs / f"{log_name}.err", "w") as err,
        ):
            child = subprocess.Popen(
                command,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                text=True,
                cwd=REPO_ROOT,
                # Own process group: Ctrl-C reaches only the bench, which stops
                # its children in order; a kill reaches the workers too.
                start_new_session=True,
                env={**os.environ, "FACEAUDIT_HOME": str(self.root / "faceaudit-home")},
            )
        self._children.append(child)
        return child

    def output(self, log_name: str) -> tuple[str, str]:
        """What a process started as `log_name` wrote to stdout and stderr."""
        logs = self.root / "logs"
        return (logs / f"{log_name}.out").read_text(), (logs / f"{log_name}.err").read_text()


def stop(child: subprocess.Popen, grace: float = 15) -> None:
    """SIGTERM (the validator stores, commits and exits), then SIGKILL its group after `grace` s."""
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
