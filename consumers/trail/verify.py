"""`faceaudit verify`: the digest chains, their signatures, and every stored row against them.

Three passes over the store (docs/verify.md):

1. the digests: each chain numbered from 1 without a gap, each naming the
   hash of the one before, each body hashing to its stored hash, and signed
   by an auditor key that counted when it was written;
2. the ledger (`batch_ledgers`, and `stored_rows` of older stores): the row
   hashes of each batch a valid digest covers give back the root that digest signed;
3. the tables: each row hashed again from its columns, and matched by its key
   to the ledger: changed (another hash), deleted (in the ledger, not in the
   table) or added (in the table, in no ledger, or more often than listed).

Rows of batches no digest covers yet (stored since the chain's last digest)
are counted apart: not tampering, not verified either; so are rows stored
before the store had a ledger (by their own time of storing, before the
migration that made it), which nothing can verify.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa
from clickhouse_connect.driver.client import Client

from consumers.keyring import KeyRing
from consumers.trail.digest_store import DIGESTS_TABLE
from consumers.trail.digests import parse_body
from consumers.trail.ledger import LEDGER_MIGRATION, LEDGER_ROWS
from consumers.trail.row_hashes import (
    DIGESTED_TABLES,
    ROW_KEYS,
    canonical,
    merkle_root,
    row_hashes,
    row_keys,
)
from schemas.ddl import DATABASE

Progress = Callable[[int], None]
"""Told how many more rows were read."""


@dataclass(frozen=True, slots=True)
class Finding:
    """Something changed after the fact, and where: its table, row, batch and digest."""

    kind: str  # digest, ledger, changed, deleted, added
    detail: str
    table: str | None = None
    row_key: str | None = None
    batch: str | None = None
    digest: str | None = None  # "chain#seq"

    def line(self) -> str:
        where = [
            f"{name} {value}"
            for name, value in (
                ("table", self.table),
                ("row", self.row_key),
                ("batch", self.batch),
                ("digest", self.digest),
            )
            if value is not None
        ]
        return f"{self.kind}: {self.detail}" + (f" ({', '.join(where)})" if where else "")


@dataclass
class Report:
    digests: int = 0
    verified_rows: Counter[str] = field(default_factory=Counter)
    pending_rows: Counter[str] = field(default_factory=Counter)
    legacy_rows: Counter[str] = field(default_factory=Counter)
    findings: list[Finding] = field(default_factory=list)

    @property
    def tampered(self) -> bool:
        return bool(self.findings)


@dataclass(frozen=True, slots=True)
class Covered:
    """A batch's table as a valid digest signed it."""

    digest: str
    root: str
    rows: int
    columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Listed:
    """A row as the ledger lists it: with the digest and the columns of its batch, or
    None for both where no valid digest covers its batch (yet)."""

    row_hash: bytes
    batch: str
    digest: str | None
    columns: tuple[str, ...] | None


def verify_store(client: Client, keyring: KeyRing, progress: Progress | None = None) -> Report:
    """Check the whole store; the report lists every finding."""
    report = Report()
    covered = _check_digests(client, keyring, report)
    listed = _check_ledger(client, covered, report)
    arrays = _array_columns(client)
    since = _ledger_since(client)
    for table in DIGESTED_TABLES:
        variants = {c.columns for (_, _, name), c in covered.items() if name == table}
        rows = _Rows(table, listed[table], variants, arrays[table], since)
        _check_rows(client, rows, report, progress)
    return report


STORED_AT = {"events": "stored_at", "violations": "detected_at", "dead_letters": "received_at"}
"""When each table's row was stored (or its finding made), to tell rows from before the ledger."""


def _ledger_since(client: Client) -> datetime | None:
    rows = client.query(
        f"SELECT applied_at FROM {DATABASE}.schema_migrations WHERE version = {{v:UInt32}}",
        parameters={"v": LEDGER_MIGRATION},
    ).result_rows
    return rows[0][0].replace(tzinfo=UTC) if rows else None


@dataclass(frozen=True, slots=True)
class _Rows:
    """What one table's rows are checked against."""

    table: str
    listed: dict[str, list[Listed]]
    variants: set[tuple[str, ...]]
    arrays: frozenset[str]
    ledger_since: datetime | None


def table_sizes(client: Client) -> int:
    """Rows of the digested tables: what a progress bar counts to."""
    return sum(
        client.query(f"SELECT count() FROM {DATABASE}.{table}").result_rows[0][0]
        for table in DIGESTED_TABLES
    )


# -- digests ------------------------------------------------------------------------


def _check_digests(client: Client, keyring: KeyRing, report: Report) -> dict:
    rows = client.query(
        f"SELECT chain, seq, digest_hash, body, key_id, signature FROM {DATABASE}.{DIGESTS_TABLE} "
        "ORDER BY chain, seq"
    ).result_rows
    covered: dict[tuple[str, str], Covered] = {}
    chain_of: dict[str, tuple[int, str | None]] = {}
    for chain, seq, stored_hash, body_text, key_id, signature in rows:
        report.digests += 1
        label = f"{chain}#{seq}"
        expected, previous = chain_of.get(chain, (1, None))
        if seq != expected:
            missing = f"#{expected}" if seq == expected + 1 else f"#{expected} to #{seq - 1}"
            report.findings.append(
                Finding("digest", f"digest {missing} of chain {chain} is missing", digest=label)
            )
        body = body_text.encode()
        digest_hash = hashlib.sha256(body).hexdigest()
        chain_of[chain] = (seq + 1, digest_hash)
        problem = _digest_problem(body, chain, seq, previous, stored_hash, digest_hash)
        if problem is None:
            parsed = parse_body(body)
            problem = keyring.digest_problem(
                key_id, datetime.fromisoformat(parsed["created_at"]), body, _hex(signature)
            )
        if problem is not None:
            report.findings.append(Finding("digest", problem, digest=label))
            continue
        for batch in parsed["batches"]:
            columns = tuple(parsed["columns"][batch["table"]])
            covered[chain, batch["batch"], batch["table"]] = Covered(
                label, batch["root"], batch["rows"], columns
            )
    return covered


def _digest_problem(
    body: bytes, chain: str, seq: int, previous: str | None, stored_hash: str, digest_hash: str
) -> str | None:
    if digest_hash != stored_hash:
        return "its body does not hash to its stored hash: changed after it was written"
    try:
        parsed = parse_body(body)
    except ValueError as exc:
        return f"its body is not a digest: {exc}"
    if (parsed.get("chain"), parsed.get("seq")) != (chain, seq):
        return f"its body is digest {parsed.get('chain')}#{parsed.get('seq')}"
    if previous is not None and parsed.get("previous") != previous:
        return "it does not name the digest before it in its chain"
    return None


def _hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""


# -- the ledger ---------------------------------------------------------------------


def _check_ledger(
    client: Client, covered: dict[tuple[str, str, str], Covered], report: Report
) -> dict[str, dict[str, list[Listed]]]:
    """Each table's rows as the ledger lists them, by key; findings for altered batches.

    Each chain keeps a ledger of its own: every worker stores the registry's rows,
    and where ClickHouse keeps only the first's (the same batch token), each chain's
    ledger still lists them as its worker stored them.
    """
    groups: dict[tuple[str, str, str], list[tuple[str, bytes]]] = defaultdict(list)
    for chain, batch, table, key, row_hash in _ledger_rows(client):
        groups[chain, batch, table].append((key, row_hash))
    listed: dict[str, dict[str, list[Listed]]] = {
        table: defaultdict(list) for table in DIGESTED_TABLES
    }
    for (chain, batch, table), entries in groups.items():
        signed = covered.get((chain, batch, table))
        digest = None if signed is None else signed.digest
        if signed is not None:
            root = merkle_root([row_hash for _, row_hash in entries]).hex()
            if root != signed.root or len(entries) != signed.rows:
                report.findings.append(
                    Finding(
                        "ledger",
                        f"the ledger lists {len(entries)} rows whose root is not the "
                        f"{signed.rows} rows' the digest signed",
                        table=table,
                        batch=batch,
                        digest=digest,
                    )
                )
        columns = None if signed is None else signed.columns
        for key, row_hash in entries:
            listed[table][key].append(Listed(row_hash, batch, digest, columns))
    for (chain, batch, table), signed in covered.items():
        if (chain, batch, table) not in groups:
            report.findings.append(
                Finding(
                    "ledger",
                    f"the ledger of {signed.rows} signed rows is gone",
                    table=table,
                    batch=batch,
                    digest=signed.digest,
                )
            )
    return listed


def _ledger_rows(client: Client) -> Iterator[tuple[str, str, str, str, bytes]]:
    query = f"SELECT chain, batch, `table`, row_key, row_hash FROM {LEDGER_ROWS}"
    with client.query_row_block_stream(query, column_formats={"row_hash": "bytes"}) as blocks:
        for block in blocks:
            yield from block


# -- the tables ---------------------------------------------------------------------


def _array_columns(client: Client) -> dict[str, frozenset[str]]:
    """The array columns of each digested table: a row without one stores an empty array."""
    rows = client.query(
        "SELECT table, groupArray(name) FROM system.columns WHERE database = {db:String} "
        "AND startsWith(type, 'Array') GROUP BY table",
        parameters={"db": DATABASE},
    ).result_rows
    found = {table: frozenset(names) for table, names in rows}
    return {table: found.get(table, frozenset()) for table in DIGESTED_TABLES}


def _check_rows(client: Client, rows: _Rows, report: Report, progress: Progress | None) -> None:
    """Hash every row of the table again and match it to the ledger by key."""
    table, listed = rows.table, rows.listed
    columns = sorted({name for variant in rows.variants for name in variant})
    found: dict[str, list[dict[tuple[str, ...], bytes]]] = defaultdict(list)
    for block in _table_blocks(client, table, columns):
        keys = row_keys(block, table).to_pylist()
        hashed = {
            variant: row_hashes(canonical(block, variant, rows.arrays)).to_pylist()
            for variant in rows.variants
        }
        stored_at = block.column(STORED_AT[table]).to_pylist()
        for index, key in enumerate(keys):
            if rows.ledger_since is not None and _utc(stored_at[index]) < rows.ledger_since:
                # Stored before the store had a ledger: counted apart from the rest.
                report.legacy_rows[table] += 1
                continue
            found[key].append({variant: hashes[index] for variant, hashes in hashed.items()})
        if progress is not None:
            progress(block.num_rows)
    for key, stored in found.items():
        entries = listed.get(key, [])
        signed = [entry for entry in entries if entry.columns is not None]
        if not entries:
            report.findings.append(
                Finding("added", "a row no ledger lists", table=table, row_key=key)
            )
        elif not signed:  # its batch is stored since the last digest
            report.pending_rows[table] += len(stored)
        else:
            _match(table, key, stored, entries, signed, report)
    for key, entries in listed.items():
        signed = [entry for entry in entries if entry.columns is not None]
        if key not in found and signed:
            report.findings.append(
                Finding(
                    "deleted",
                    "a row the ledger lists is not in the table",
                    table=table,
                    row_key=key,
                    batch=signed[0].batch,
                    digest=signed[0].digest,
                )
            )


def _utc(moment: datetime) -> datetime:
    """clickhouse-connect gives UTC columns as naive datetimes."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _match(
    table: str,
    key: str,
    rows: list[dict[tuple[str, ...], bytes]],
    entries: list[Listed],
    signed: list[Listed],
    report: Report,
) -> None:
    """The rows stored under `key` against the hashes the signed ledger gives for it."""
    where = {"table": table, "row_key": key, "batch": signed[0].batch, "digest": signed[0].digest}
    for row in rows:
        if not any(row[entry.columns] == entry.row_hash for entry in signed):
            report.findings.append(
                Finding("changed", "the row's values are not those stored", **where)
            )
    if len(rows) > len(entries):
        report.findings.append(
            Finding("added", f"{len(rows)} rows where the ledger lists {len(entries)}", **where)
        )
    report.verified_rows[table] += len(rows)


def _table_blocks(client: Client, table: str, columns: list[str]) -> Iterator[pa.Table]:
    """The table's rows, a block at a time, with its hashed columns and its row keys."""
    wanted = list(dict.fromkeys([*columns, *ROW_KEYS[table], STORED_AT[table]]))
    names = ", ".join(f"`{name}`" for name in wanted)
    query = f"SELECT {names} FROM {DATABASE}.{table}"
    # Strings as bytes: a dead letter's raw bytes need not be UTF-8.
    bytes_please = {"output_format_arrow_string_as_string": 0}
    with client.query_arrow_stream(query, settings=bytes_please) as stream:
        for batch in stream:
            yield pa.Table.from_batches([batch])
