"""The Kafka security flags every command that talks to Kafka takes, as FACEAUDIT_KAFKA_*."""

from __future__ import annotations

import argparse
from typing import Any

from core.clients import SECURITY_PROTOCOLS

KAFKA_FLAGS = (
    "kafka_security_protocol",
    "kafka_user",
    "kafka_password_file",
    "kafka_ca_file",
    "kafka_cert_file",
    "kafka_key_file",
)


def add_kafka_flags(parser: argparse.ArgumentParser) -> None:
    """--kafka-* flags; given none (nor FACEAUDIT_KAFKA_*), the local broker's credentials."""
    group = parser.add_argument_group(
        "Kafka security",
        "Without these (and without FACEAUDIT_KAFKA_* variables), a command that talks to "
        "the local broker (faceaudit broker start) logs in as its role's user by itself.",
    )
    group.add_argument(
        "--kafka-security-protocol",
        type=str.upper,
        choices=SECURITY_PROTOCOLS,
        help="FACEAUDIT_KAFKA_SECURITY_PROTOCOL; default SASL_SSL when a user is given, "
        "SSL with only a certificate; PLAINTEXT only when asked for",
    )
    group.add_argument(
        "--kafka-user", metavar="NAME", help="SCRAM-SHA-512 user (FACEAUDIT_KAFKA_USER)"
    )
    group.add_argument(
        "--kafka-password-file",
        metavar="FILE",
        help="file holding the user's password (FACEAUDIT_KAFKA_PASSWORD_FILE, "
        "or the password itself in FACEAUDIT_KAFKA_PASSWORD); never a flag of its own",
    )
    group.add_argument(
        "--kafka-ca-file",
        metavar="PEM",
        help="CA certificate(s) the broker's certificate must chain to (FACEAUDIT_KAFKA_CA_FILE)",
    )
    group.add_argument(
        "--kafka-cert-file",
        metavar="PEM",
        help="client certificate for mutual TLS (FACEAUDIT_KAFKA_CERT_FILE)",
    )
    group.add_argument(
        "--kafka-key-file",
        metavar="PEM",
        help="private key of the client certificate (FACEAUDIT_KAFKA_KEY_FILE)",
    )


def kafka_flags(args: argparse.Namespace) -> dict[str, Any]:
    """The --kafka-* flags given, by Settings field name (None: not given)."""
    return {name: getattr(args, name, None) for name in KAFKA_FLAGS}
