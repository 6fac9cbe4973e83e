"""``faceaudit verify``: check the store against the validator's signed digests.

Exit status 0 when all verified, 1 when tampering was found, 2 for bad input
(a store that cannot be opened, keys that cannot be read), so it reports those
itself instead of raising FaceauditError, whose exit code 1 would read as
"tampering found".
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Final

from clickhouse_connect.driver.client import Client

from consumers.keyring import KeyRing
from consumers.settings import Settings
from core.clients import redact
from core.errors import FaceauditError
from faceaudit.kafka_flags import add_kafka_flags, kafka_flags
from schemas import codec

EXIT_VERIFIED: Final = 0
EXIT_TAMPERED: Final = 1
EXIT_BAD_INPUT: Final = 2


def add_verify_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``faceaudit verify``."""
    verify = commands.add_parser(
        "verify",
        help="check the stored trail against the validator's signed digests",
        description="Check every digest chain (numbered without gaps, each naming the one "
        "before, signed by a registered auditor key), the ledger of row hashes against the "
        "signed roots, and every stored event, violation and dead letter against the ledger. "
        "Reports each row changed, deleted or added after it was stored, with its batch and "
        "digest. Exit status: 0 all verified, 1 tampering found, 2 bad input.",
    )
    verify.add_argument(
        "--clickhouse",
        metavar="DSN",
        help="the store (chdb://PATH or http(s)://…; FACEAUDIT_CLICKHOUSE)",
    )
    verify.add_argument(
        "--keys",
        type=Path,
        metavar="FILE",
        help="the trusted key records, JSON lines (faceaudit keys list --format jsonl); "
        "default: read faceaudit.keys.v1",
    )
    verify.add_argument("--bootstrap", help="Kafka bootstrap servers, for the keys topic")
    add_kafka_flags(verify)
    verify.add_argument(
        "--format",
        choices=("text", "jsonl"),
        default="text",
        help="text: one line per finding (default); jsonl: one object per finding",
    )
    verify.add_argument("--no-progress", action="store_true", help="no progress bar")
    proofs = verify.add_mutually_exclusive_group()
    proofs.add_argument(
        "--event",
        metavar="ID",
        help="print the event's inclusion proof up to a signed digest (JSON), instead",
    )
    proofs.add_argument(
        "--proof",
        type=Path,
        metavar="FILE",
        help="check a proof --event printed, without the store, instead",
    )
    verify.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from consumers.store import open_reader
    from consumers.trail.verify import table_sizes, verify_store

    settings = Settings.resolve(
        {"clickhouse": args.clickhouse, "bootstrap": args.bootstrap, **kafka_flags(args)},
        role="validator",  # on the local broker: a user that may read the keys topic
    )
    try:
        keyring = _keyring(args.keys, settings)
        if args.proof is not None:
            return _check_proof(args.proof, keyring)
        client = open_reader(settings.clickhouse)  # what it checks, it must not change
    except FaceauditError as exc:
        return _bad_input(str(exc))
    if args.event is not None:
        return _print_proof(client, args.event)
    try:
        total = table_sizes(client)
        with tqdm(total=total, unit="row", file=sys.stderr, disable=args.no_progress) as bar:
            report = verify_store(client, keyring, bar.update)
    finally:
        client.close()
    for finding in report.findings:
        if args.format == "jsonl":
            print(json.dumps(dataclasses.asdict(finding)))
        else:
            print(finding.line())
    verified = ", ".join(f"{n:,} {table}" for table, n in sorted(report.verified_rows.items()))
    pending = sum(report.pending_rows.values())
    legacy = sum(report.legacy_rows.values())
    if legacy:
        print(
            f"faceaudit verify: {legacy:,} rows were stored before the store had a ledger "
            "(before migration 0010): nothing can verify them",
            file=sys.stderr,
        )
    outcome = f"{len(report.findings)} findings: tampering found" if report.tampered else ""
    print(
        f"faceaudit verify: {redact(settings.clickhouse)}: {report.digests} digests, "
        f"{verified or 'no rows'} verified; {pending:,} rows stored since the last digest; "
        f"{outcome or 'no tampering'}",
        file=sys.stderr,
    )
    return EXIT_TAMPERED if report.tampered else EXIT_VERIFIED


def _print_proof(client: Client, event_id: str) -> int:
    from consumers.trail.proofs import event_proof

    try:
        proof = event_proof(client, event_id)
    except FaceauditError as exc:
        return _bad_input(str(exc))
    finally:
        client.close()
    print(json.dumps(proof, indent=2))
    return EXIT_VERIFIED


def _check_proof(path: Path, keyring: KeyRing) -> int:
    from consumers.trail.proofs import check_proof

    try:
        proof = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FaceauditError(f"cannot read the proof {path}: {exc}") from None
    problem = check_proof(proof, keyring)
    if problem is not None:
        print(f"faceaudit verify: {path}: {problem}", file=sys.stderr)
        return EXIT_TAMPERED
    digest = proof["digest"]
    print(
        f"faceaudit verify: {path}: event {proof.get('event_id')} is in batch {proof['batch']}, "
        f"which digest {digest['chain']}#{digest['seq']} signed with {digest['key_id']}",
        file=sys.stderr,
    )
    return EXIT_VERIFIED


def _keyring(path: Path | None, settings: Settings) -> KeyRing:
    """The trusted keys: from `path`, or as the keys topic has them."""
    keyring = KeyRing()
    if path is None:
        from consumers.key_feed import KeyFeed

        feed = KeyFeed(settings.kafka, keyring)
        try:
            feed.read_to_end()
        finally:
            feed.close()
        return keyring
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise FaceauditError(f"cannot read the keys {path}: {exc.strerror}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            kind, record = codec.from_json(json.loads(line))
        except (ValueError, codec.EncodeError) as exc:
            raise FaceauditError(f"{path}:{number}: not a key record: {exc}") from None
        if kind != "key":
            raise FaceauditError(f"{path}:{number}: a {kind} record, not a key record")
        keyring.add(record)
    return keyring


def _bad_input(message: str) -> int:
    print(f"faceaudit: error: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT
