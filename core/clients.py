"""The one place where the project's Kafka and ClickHouse clients are built.

Every client is made here from its configuration and handed to the code
that uses it, so that what each connection needs is set once (and, when the
services ask for SASL_SSL or TLS, added once), and a service that cannot be
reached is reported the same way by every command.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.errors import (
    AuthorizationError,
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaError,
    KafkaTimeoutError,
    SaslAuthenticationFailedError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailedError,
)

from core.errors import FaceauditError

KafkaClient = TypeVar("KafkaClient", KafkaConsumer, KafkaProducer, KafkaAdminClient)

SECURITY_PROTOCOLS = ("SASL_SSL", "SSL", "SASL_PLAINTEXT", "PLAINTEXT")
SASL_MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    """How every Kafka client of the project reaches the brokers, and who it is there.

    `security_protocol` None means: SASL_SSL when a user is given, SSL when
    only a client certificate or a CA is; with neither, no client is built
    (PLAINTEXT must be asked for by name). The password is never shown: it
    is kept out of the repr and out of every message.
    """

    bootstrap: str
    timeout: float = 15.0  # seconds to wait for the first broker answer
    security_protocol: str | None = None
    user: str | None = None  # SCRAM-SHA-512
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None  # PEM; None: the system's trusted CAs
    cert_file: str | None = None  # PEM client certificate, for mutual TLS
    key_file: str | None = None  # PEM private key of cert_file

    @property
    def protocol(self) -> str | None:
        """The security protocol the clients use, None if there is nothing to go by."""
        if self.security_protocol:
            return self.security_protocol.upper()
        if self.user:
            return "SASL_SSL"
        if self.cert_file or self.ca_file:
            return "SSL"
        return None

    @property
    def who(self) -> str:
        """Who the clients are to the broker, for messages: never the password."""
        if self.user:
            return f"user {self.user!r}"
        if self.cert_file:
            return f"the certificate {self.cert_file}"
        return "an anonymous client"

    def security_options(self) -> dict[str, Any]:
        """kafka-python's security settings for this configuration; FaceauditError if unusable."""
        protocol = self.protocol
        if protocol is None:
            raise FaceauditError(
                f"no Kafka credentials for {self.bootstrap}: give a user "
                "(--kafka-user, FACEAUDIT_KAFKA_USER) and its password "
                "(--kafka-password-file, FACEAUDIT_KAFKA_PASSWORD_FILE or "
                "FACEAUDIT_KAFKA_PASSWORD), or a client certificate; for a broker "
                "without security say so with --kafka-security-protocol PLAINTEXT"
            )
        if protocol not in SECURITY_PROTOCOLS:
            raise FaceauditError(
                f"unknown Kafka security protocol {protocol!r}: "
                f"choose one of {', '.join(SECURITY_PROTOCOLS)}"
            )
        options: dict[str, Any] = {"security_protocol": protocol}
        if protocol.startswith("SASL_"):
            if not self.user or not self.password:
                missing = "a user" if not self.user else f"a password for user {self.user!r}"
                raise FaceauditError(
                    f"Kafka at {self.bootstrap} is reached with {protocol}, which needs "
                    f"{missing} (--kafka-user, --kafka-password-file; FACEAUDIT_KAFKA_USER, "
                    "FACEAUDIT_KAFKA_PASSWORD_FILE or FACEAUDIT_KAFKA_PASSWORD)"
                )
            options |= {
                "sasl_mechanism": SASL_MECHANISM,
                "sasl_plain_username": self.user,
                "sasl_plain_password": self.password,
            }
        if protocol.endswith("SSL"):
            if self.key_file and not self.cert_file:
                raise FaceauditError("a client key file needs its certificate (--kafka-cert-file)")
            options |= {
                "ssl_check_hostname": True,
                "ssl_cafile": self.ca_file,
                "ssl_certfile": self.cert_file,
                "ssl_keyfile": self.key_file,
            }
            for name in ("ca_file", "cert_file", "key_file"):
                path = getattr(self, name)
                if path and not os.access(path, os.R_OK):
                    raise FaceauditError(
                        f"the Kafka {name.replace('_', ' ')} {path} cannot be read"
                    )
        return options


def read_password_file(path: str | os.PathLike[str]) -> str:
    """The password in `path` (one line; a trailing newline is dropped); never shown in errors."""
    try:
        with open(path, encoding="utf-8") as file:
            password = file.read().rstrip("\r\n")
    except OSError as exc:
        raise FaceauditError(
            f"cannot read the Kafka password file {path}: {exc.strerror}"
        ) from None
    if not password:
        raise FaceauditError(f"the Kafka password file {path} is empty")
    return password


def kafka_consumer(config: KafkaConfig, **options: Any) -> KafkaConsumer:
    """A consumer with kafka-python's `options`; FaceauditError if no broker answers."""
    return _connect(KafkaConsumer, config, options)


def kafka_producer(config: KafkaConfig, **options: Any) -> KafkaProducer:
    """A producer with kafka-python's `options`; FaceauditError if no broker answers."""
    return _connect(KafkaProducer, config, options)


def kafka_admin(config: KafkaConfig, **options: Any) -> KafkaAdminClient:
    """An admin client with kafka-python's `options`; FaceauditError if no broker answers."""
    return _connect(KafkaAdminClient, config, options)


def _connect(
    make: Callable[..., KafkaClient], config: KafkaConfig, options: dict[str, Any]
) -> KafkaClient:
    """`make` the client; it asks a broker for its version before it returns.

    The connection and security settings cannot be overridden by `options`
    (a repeated keyword is a TypeError): they are this module's alone.
    """
    connection = {
        "bootstrap_servers": config.bootstrap,
        "bootstrap_timeout_ms": int(config.timeout * 1000),
        **config.security_options(),
    }
    try:
        with _BootstrapWatch() as watch:
            return make(**connection, **options)
    except KafkaTimeoutError:
        sasl = (config.protocol or "").startswith("SASL_")
        if watch.refusal is not None:
            raise FaceauditError(refusal(config, watch.refusal) or "") from None
        if sasl and watch.disconnects:
            raise FaceauditError(
                f"Kafka at {config.bootstrap} refused {config.who}: it closed every "
                "connection during the login (unknown user or wrong password)"
            ) from None
        why = f"no broker answered within {config.timeout:g} s"
        if not sasl:
            why += (
                f"; connected with {config.protocol}: a broker that wants TLS or SASL "
                "closes such connections without an answer"
            )
    except KafkaError as exc:
        refused = refusal(config, exc)
        if refused:
            raise FaceauditError(refused) from None
        why = f"{exc.__class__.__name__}: {exc}"
    raise FaceauditError(f"cannot reach Kafka at {config.bootstrap} ({why})")


class _BootstrapWatch(logging.Handler):
    """Catches the authentication failure kafka-python logs while it bootstraps.

    kafka-python retries a refused login until its bootstrap timeout and then
    reports only the timeout; the refusal itself is in the warning it logs on
    each try. Its logger is enabled (and kept from propagating, so nothing is
    printed that was not before) only while a client is being built.
    """

    _logger = logging.getLogger("kafka.net.manager")

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.refusal: BaseException | None = None
        # Connections the broker closed after accepting them; with SASL, it
        # sometimes closes a refused login before kafka-python reads the refusal.
        self.disconnects = 0

    def emit(self, record: logging.LogRecord) -> None:
        for arg in record.args if isinstance(record.args, tuple) else ():
            if isinstance(arg, SaslAuthenticationFailedError):
                self.refusal = arg
            elif isinstance(arg, KafkaError) and "socket disconnected" in str(arg):
                self.disconnects += 1

    def __enter__(self) -> _BootstrapWatch:
        self._saved = self._logger.level, self._logger.propagate
        if not self._logger.isEnabledFor(logging.WARNING):
            self._logger.setLevel(logging.WARNING)
            self._logger.propagate = False
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._saved[0])
        self._logger.propagate = self._saved[1]


def refusal(config: KafkaConfig, error: BaseException, doing: str = "") -> str | None:
    """What Kafka refused `config`'s principal, if `error` is an authentication or ACL refusal.

    `doing` names what was tried ("write faceaudit.violations.v1"); the message
    names the user, never the password. None for any other error.
    """
    if isinstance(error, SaslAuthenticationFailedError):
        return (
            f"Kafka at {config.bootstrap} refused {config.who}: authentication failed "
            "(unknown user or wrong password)"
        )
    if isinstance(error, AuthorizationError):
        what = doing or _refused_what(error)
        return (
            f"Kafka at {config.bootstrap} refused {config.who} to {what}: "
            f"no ACL allows it ({error.__class__.__name__})"
        )
    return None


def _refused_what(error: AuthorizationError) -> str:
    if isinstance(error, TopicAuthorizationFailedError):
        topics = ", ".join(sorted(_names(error))) or "a topic"
        return f"use {topics}"
    if isinstance(error, GroupAuthorizationFailedError):
        return f"use the consumer group {', '.join(sorted(_names(error))) or ''}".rstrip()
    if isinstance(error, ClusterAuthorizationFailedError):
        return "act on the cluster"
    if isinstance(error, TransactionalIdAuthorizationFailedError):
        return "use a transactional id"
    return "do this"


def _names(error: BaseException) -> set[str]:
    """Topic or group names kafka-python puts in an authorization error's arguments."""
    names: set[str] = set()
    for arg in error.args:
        if isinstance(arg, str):
            names.add(arg)
        elif isinstance(arg, set | frozenset | list | tuple):
            names.update(str(a) for a in arg)
    return names


def clickhouse_client(dsn: str, **settings: object) -> Client:
    """A client for `dsn` (`chdb://ABSOLUTE-PATH` or `http(s)://…`), its queries run with
    `settings`; FaceauditError if it fails."""
    try:
        return clickhouse_connect.get_client(dsn=dsn, settings=settings or None)
    except ClickHouseError as exc:
        raise FaceauditError(_cannot_open(dsn, exc)) from None
    except OSError as exc:
        raise FaceauditError(f"cannot reach ClickHouse at {redact(dsn)}: {exc}") from None


def is_embedded(client: Client) -> bool:
    """Whether `client` drives an in-process chDB engine rather than a ClickHouse server."""
    # clickhouse-connect builds its chDB client in a private module; the class
    # is what tells the two apart.
    from clickhouse_connect.driver._chdbclient import ChdbClient

    return isinstance(client, ChdbClient)


def redact(dsn: str) -> str:
    """The DSN with any password replaced, for messages and logs."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _cannot_open(dsn: str, exc: ClickHouseError) -> str:
    text = str(exc)
    if "EmbeddedServer" in text or "already initialized" in text:
        return (
            f"the embedded store {redact(dsn)} is already open in another process: "
            "chDB lets one process open a store; stop that process, or use a "
            "ClickHouse server DSN (http://user:pass@host:8123/faceaudit)"
        )
    return f"cannot open ClickHouse at {redact(dsn)}: {text.splitlines()[0]}"
