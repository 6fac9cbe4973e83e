"""The flags of the commands that run the validator (consume, serve), and their settings."""

from __future__ import annotations

import argparse
import dataclasses

from consumers.settings import Settings
from faceaudit.kafka_flags import add_kafka_flags
from faceaudit.trust_flag import add_trust_flag


def add_validator_flags(parser: argparse.ArgumentParser) -> None:
    """Where to read and store, how to judge, batch, stop and sign digests."""
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (FACEAUDIT_BOOTSTRAP)")
    add_kafka_flags(parser)
    parser.add_argument(
        "--clickhouse",
        metavar="DSN",
        help="chdb://PATH (embedded, default chdb://.faceaudit/clickhouse) or "
        "http(s)://user:pass@host:8123/faceaudit (FACEAUDIT_CLICKHOUSE)",
    )
    parser.add_argument(
        "--mask-key-file",
        metavar="PATH",
        help="key of the hashes that replace real identifiers in stored events, made "
        "(owner-only) if missing (default .faceaudit/mask.key; FACEAUDIT_MASK_KEY_FILE)",
    )
    add_trust_flag(parser)
    parser.add_argument("--group", help="consumer group id (FACEAUDIT_GROUP)")
    parser.add_argument(
        "--profile", help="cac-2025 (default) or cac-2023-draft (FACEAUDIT_PROFILE)"
    )
    parser.add_argument(
        "--metrics-port", type=int, help="serve Prometheus /metrics on 127.0.0.1:PORT"
    )
    parser.add_argument(
        "--until-idle",
        type=float,
        metavar="SECONDS",
        help="exit once no message has arrived for this long and all is read to the end",
    )
    parser.add_argument("--batch-size", type=positive_int, help="messages per batch (20000)")
    parser.add_argument(
        "--batch-seconds",
        type=float,
        metavar="SECONDS",
        help="longest a batch is filled before it is stored (0.25); "
        "longer raises throughput, shorter lowers latency",
    )
    parser.add_argument(
        "--registry-grace",
        type=float,
        metavar="SECONDS",
        help="how long an event waits for its consent or deployment record (30)",
    )
    parser.add_argument(
        "--dead-letter-limit",
        dest="dead_letter_max_consecutive",
        type=positive_int,
        metavar="N",
        help="stop after N dead letters in a row (1000)",
    )
    parser.add_argument(
        "--dead-letter-ratio",
        dest="dead_letter_max_ratio",
        type=share,
        metavar="R",
        help="stop when more than this share of the last 1000 messages are dead letters (0.5)",
    )
    parser.add_argument(
        "--digests",
        choices=("on", "off"),
        help="sign chained digests of what is stored, for faceaudit verify (on; FACEAUDIT_DIGESTS)",
    )
    parser.add_argument(
        "--digest-interval",
        type=float,
        metavar="SECONDS",
        help="how often a digest is written (60); a clean stop writes a last one",
    )
    parser.add_argument(
        "--auditor-key",
        metavar="PATH",
        help="the auditor's Ed25519 private key the digests are signed with (default: the "
        "one auditor key under $FACEAUDIT_HOME/keys; FACEAUDIT_AUDITOR_KEY)",
    )
    parser.add_argument(
        "--chain",
        metavar="NAME",
        help="the digest chain's name (default: the group); each validator process of a "
        "group needs its own (--workers adds /N)",
    )


def validator_settings(args: argparse.Namespace) -> Settings:
    """The validator's settings from the flags and FACEAUDIT_* variables; digests are
    signed with the one local auditor key unless another is named."""
    from faceaudit.home import local_auditor_key

    settings = Settings.resolve(vars(args), role="validator")
    if settings.digests == "on" and settings.auditor_key is None:
        found = local_auditor_key()
        if found is not None:
            settings = dataclasses.replace(settings, auditor_key=str(found))
    return settings


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {value}")
    return value
