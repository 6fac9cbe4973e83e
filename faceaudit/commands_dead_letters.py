"""The ``faceaudit dead-letters list|replay`` subcommands: flags in, ``consumers.replay`` called.

Errors are FaceauditError (one line, exit 1, from ``faceaudit.cli.main``);
bad flags are argparse's usage errors (exit 2).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from consumers.settings import Settings
from faceaudit.kafka_flags import add_kafka_flags, kafka_flags

if TYPE_CHECKING:
    from consumers.replay import DeadLetter, Selection

EXIT_OK: Final = 0
DEFAULT_LIMIT: Final = 50
DETAIL_WIDTH: Final = 120  # the table is for reading; jsonl carries the whole detail
TABLE_HEADER: Final = ("POSITION", "REASON", "KEY", "SIZE", "RECEIVED_AT", "DETAIL")


def add_dead_letters_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``faceaudit dead-letters`` with its ``list`` and ``replay`` actions."""
    dead = commands.add_parser(
        "dead-letters",
        help="list dead letters, or replay them after a fix",
        description="Inspect the messages the validator could not judge (the dead_letters "
        "table) and, once the producer or schema is fixed, send them back to their topics. "
        "Rows are never deleted: the table is an audit record.",
    )
    actions = dead.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_list(actions)
    _add_replay(actions)


def _add_list(actions: argparse._SubParsersAction) -> None:
    listing = actions.add_parser(
        "list",
        help="show dead letters, newest first",
        description="Position (topic[partition]@offset), reason, key, size, time received and "
        "detail of each selected dead letter, newest first.",
    )
    _add_selection(listing)
    listing.add_argument(
        "--limit",
        type=_positive_int,
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"show at most N (default {DEFAULT_LIMIT})",
    )
    listing.add_argument(
        "--format",
        choices=("table", "jsonl"),
        default="table",
        help="table (default), or jsonl: one object per line with the raw bytes in base64",
    )
    listing.set_defaults(handler=_list)


def _add_replay(actions: argparse._SubParsersAction) -> None:
    replay = actions.add_parser(
        "replay",
        help="send dead letters back to their original topics",
        description="Send the original bytes and key of each selected dead letter to its "
        "original topic, in offset order. Rows stay in the table; a message that is still "
        "bad becomes a dead letter again. Use --since to replay only what arrived after a "
        "given time, e.g. since the faulty producer went out.",
    )
    _add_selection(replay)
    replay.add_argument("--bootstrap", help="Kafka bootstrap servers (FACEAUDIT_BOOTSTRAP)")
    add_kafka_flags(replay)
    replay.add_argument(
        "--dry-run", action="store_true", help="count what would be sent, send nothing"
    )
    replay.set_defaults(handler=_replay)


def _add_selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--clickhouse",
        metavar="DSN",
        help="chdb://PATH or http(s)://user:pass@host:8123/faceaudit (FACEAUDIT_CLICKHOUSE)",
    )
    parser.add_argument("--reason", metavar="R", help="only this reason, e.g. unknown_fingerprint")
    parser.add_argument("--topic", metavar="T", help="only dead letters read from this topic")
    parser.add_argument(
        "--since",
        type=_timestamp,
        metavar="ISO",
        help="only dead letters received at or after this ISO-8601 time (no zone: UTC)",
    )


# -- handlers ---------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    from consumers.replay import list_dead_letters
    from consumers.store import open_store

    settings = Settings.resolve({"clickhouse": args.clickhouse})
    client = open_store(settings.clickhouse)
    try:
        letters = list_dead_letters(
            client, _selection(args), args.limit, with_raw=args.format == "jsonl"
        )
    finally:
        client.close()
    if not letters:
        print("no dead letters match", file=sys.stderr)
        return EXIT_OK
    lines = _jsonl(letters) if args.format == "jsonl" else _table(letters)
    try:
        for line in lines:
            print(line)
        sys.stdout.flush()
    except BrokenPipeError:  # `faceaudit dead-letters list | head`: the reader has gone
        _silence_stdout()
        return 128 + signal.SIGPIPE
    return EXIT_OK


def _replay(args: argparse.Namespace) -> int:
    from consumers.replay import dead_letters_to_replay, replay, replay_to_kafka
    from consumers.store import open_store

    # Replayed letters go back to the input topics: the local broker's producer writes them.
    settings = Settings.resolve(
        {"clickhouse": args.clickhouse, "bootstrap": args.bootstrap, **kafka_flags(args)},
        role="producer",
    )
    client = open_store(settings.clickhouse)
    try:
        letters = dead_letters_to_replay(client, _selection(args))
        if args.dry_run:
            sent = replay(letters, lambda *_: None)
        else:
            sent = replay_to_kafka(settings.kafka, letters)
    finally:
        client.close()
    print(_replay_report(sent, args.dry_run, settings.bootstrap))
    return EXIT_OK


def _selection(args: argparse.Namespace) -> Selection:
    from consumers.replay import Selection

    return Selection(reason=args.reason, topic=args.topic, since=args.since)


# -- output -------------------------------------------------------------------------


def _jsonl(letters: Sequence[DeadLetter]) -> list[str]:
    return [json.dumps(letter.to_json(), ensure_ascii=False) for letter in letters]


def _table(letters: Sequence[DeadLetter]) -> list[str]:
    """Aligned columns, the detail last (it is the long one)."""
    rows = [TABLE_HEADER, *(_table_row(letter) for letter in letters)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_HEADER) - 1)]
    return [_align(row, widths) for row in rows]


def _table_row(letter: DeadLetter) -> tuple[str, ...]:
    key = "-" if letter.key_text is None else _printable(letter.key_text)
    return (
        letter.position,
        letter.reason,
        key,
        str(letter.size),
        letter.received_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
        _printable(_shorten(letter.detail, DETAIL_WIDTH)),
    )


def _align(row: tuple[str, ...], widths: list[int]) -> str:
    *cells, detail = row
    return "  ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)) + "  " + detail


def _replay_report(sent: Counter[str], dry_run: bool, bootstrap: str) -> str:
    total = sum(sent.values())
    if not total:
        return "no dead letters match; nothing to replay"
    topics = ", ".join(f"{topic} {n}" for topic, n in sorted(sent.items()))
    noun = "dead letter" if total == 1 else "dead letters"
    if dry_run:
        return f"would replay {total} {noun} ({topics}); dry run, nothing sent"
    return f"replayed {total} {noun} to {bootstrap} ({topics}); the rows stay in dead_letters"


def _printable(text: str) -> str:
    """One table cell: control characters escaped, so a row stays one line."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


# -- argument types -------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _timestamp(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO-8601 time") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed
