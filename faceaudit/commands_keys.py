"""The ``faceaudit keys generate|list|revoke`` subcommands: the operator's keys, on Kafka.

Each logs in as the operator (the only principal that may write the keys
topic); errors are FaceauditError (one line, exit 1).
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from consumers.settings import Settings
from core.clients import KafkaConfig
from core.errors import FaceauditError
from faceaudit.home import KEYS_DIR, home
from faceaudit.kafka_flags import add_kafka_flags, kafka_flags
from schemas import codec

TABLE_HEADER: Final = ("KEY_ID", "OWNER", "PROCESSOR", "DEVICE", "VALID_FROM", "REVOKED_AT")


def add_keys_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``faceaudit keys`` with its ``generate``, ``list`` and ``revoke`` actions."""
    keys = commands.add_parser(
        "keys",
        help="make, list and revoke the keys the audit trusts",
        description="Ed25519 keys of processors, devices and the auditor. The public key is "
        "registered as a key record on faceaudit.keys.v1 (the operator alone may write it); "
        "the private key stays in a file only its owner can read.",
    )
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    generate = actions.add_parser(
        "generate",
        help="make a key pair and register its public key",
        description="Write the private key to DIR/KEY_ID.pem (mode 0600) and register the "
        "public key. Prints the key id and the file, never the private key.",
    )
    generate.add_argument("--owner", required=True, choices=("processor", "device", "auditor"))
    generate.add_argument("--processor-id", help="the processor the key speaks for")
    generate.add_argument("--device-id", help="the device, for a device key")
    generate.add_argument(
        "--dir",
        type=Path,
        help=f"where the private key goes (default $FACEAUDIT_HOME/{KEYS_DIR})",
    )
    generate.add_argument(
        "--valid-from", type=_moment, metavar="TIME", help="ISO-8601 (default now)"
    )
    _add_kafka(generate)
    generate.set_defaults(handler=_generate)
    listing = actions.add_parser(
        "list",
        help="show the registered keys",
        description="The latest record of every key on faceaudit.keys.v1.",
    )
    listing.add_argument("--format", choices=("table", "jsonl"), default="table")
    _add_kafka(listing)
    listing.set_defaults(handler=_list)
    revoke = actions.add_parser(
        "revoke",
        help="revoke a registered key",
        description="Register the key again with revoked_at: records it signed from then on "
        "no longer count.",
    )
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.add_argument("--at", type=_moment, metavar="TIME", help="ISO-8601 (default now)")
    _add_kafka(revoke)
    revoke.set_defaults(handler=_revoke)


def _add_kafka(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers (FACEAUDIT_BOOTSTRAP)")
    add_kafka_flags(parser)


def _kafka(args: argparse.Namespace) -> KafkaConfig:
    flags = {"bootstrap": args.bootstrap, **kafka_flags(args)}
    return Settings.resolve(flags, role="operator").kafka


def _generate(args: argparse.Namespace) -> int:
    from faceaudit.keys import new_key_record, publish, write_private_key

    valid_from = args.valid_from or datetime.now(UTC)
    record, private = new_key_record(args.owner, args.processor_id, args.device_id, valid_from)
    kafka = _kafka(args)
    path = write_private_key(private, args.dir or home() / KEYS_DIR, record["key_id"])
    try:
        publish(kafka, record)
    except FaceauditError:
        path.unlink()  # a key nobody trusts must not be used to sign
        raise
    public = base64.b64encode(record["public_key"]).decode()
    print(f"key {record['key_id']} registered; private key in {path} (public key {public})")
    return 0


def _list(args: argparse.Namespace) -> int:
    from faceaudit.keys import registered_keys

    keys, bad = registered_keys(_kafka(args))
    for problem in bad:
        print(f"faceaudit keys list: skipped {problem}", file=sys.stderr)
    if args.format == "jsonl":
        for record in keys.values():
            print(json.dumps(codec.to_json("key", record)))
        return 0
    rows = [TABLE_HEADER, *(_row(record) for record in keys.values())]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_HEADER))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    if not keys:
        print("no keys registered", file=sys.stderr)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from faceaudit.keys import publish, registered_keys, revoked

    kafka = _kafka(args)
    record = registered_keys(kafka)[0].get(args.key_id)
    if record is None:
        raise FaceauditError(f"no key {args.key_id!r} is registered on faceaudit.keys.v1")
    update = revoked(record, args.at or datetime.now(UTC))
    publish(kafka, update)
    print(f"key {args.key_id} revoked at {update['revoked_at'].isoformat()}")
    return 0


def _row(record: dict[str, Any]) -> tuple[str, ...]:
    revoked_at = record["revoked_at"]
    return (
        record["key_id"],
        record["owner"],
        record["processor_id"] or "-",
        record["device_id"] or "-",
        record["valid_from"].isoformat(),
        revoked_at.isoformat() if revoked_at else "-",
    )


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 time") from None
    if moment.utcoffset() is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no zone (add Z or +08:00)")
    return moment.astimezone(UTC)
