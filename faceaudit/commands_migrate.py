"""The ``faceaudit migrate`` subcommand: bring a store's schema up to date, or a cluster's."""

from __future__ import annotations

import argparse
import sys

from consumers.settings import Settings
from core.clients import redact
from core.errors import FaceauditError


def add_migrate_parser(commands: argparse._SubParsersAction) -> None:
    """Register ``faceaudit migrate``."""
    mig = commands.add_parser(
        "migrate",
        help="create or update the store's schema (every command that writes does it too)",
        description="Apply the schema migrations not yet applied. With --cluster NAME, apply "
        "them rendered for a ClickHouse cluster instead: ReplicatedMergeTree tables "
        "(faceaudit.T_local, with the {shard} and {replica} macros) behind Distributed "
        "tables of the same names as on one node, every statement ON CLUSTER; run it once, "
        "before the validators start. --print shows the statements without connecting.",
    )
    mig.add_argument(
        "--clickhouse",
        metavar="DSN",
        help="chdb://PATH or http(s)://user:pass@host:8123/faceaudit (FACEAUDIT_CLICKHOUSE)",
    )
    mig.add_argument("--cluster", metavar="NAME", help="the cluster of the server's remote_servers")
    mig.add_argument(
        "--print", action="store_true", help="with --cluster: print the statements and exit"
    )
    mig.set_defaults(handler=_migrate)


def _migrate(args: argparse.Namespace) -> int:
    from schemas.cluster_ddl import ClusterRenderError, bootstrap_statements, cluster_migrations
    from schemas.ddl import apply, migrations

    if args.print and not args.cluster:
        raise FaceauditError("--print goes with --cluster NAME")
    if args.cluster:
        try:
            plan = cluster_migrations(migrations(), args.cluster)
        except ClusterRenderError as exc:
            raise FaceauditError(str(exc)) from None
        bootstrap = bootstrap_statements(args.cluster)
        if args.print:
            for statement in (*bootstrap, *(s for m in plan for s in m.statements)):
                print(f"{statement};\n")
            return 0
    dsn = Settings.resolve({"clickhouse": args.clickhouse}).clickhouse
    if args.cluster:
        from consumers.store import CHDB_SCHEME
        from core.clients import clickhouse_client

        if dsn.startswith(CHDB_SCHEME):
            raise FaceauditError("--cluster needs a ClickHouse server DSN (http(s)://…)")
        client = clickhouse_client(dsn, distributed_foreground_insert=1)
        try:
            applied = apply(client, bootstrap, plan)
        finally:
            client.close()
    else:
        from consumers.store import open_store

        open_store(dsn).close()  # opening a store migrates it
        applied = []
    where = f"cluster {args.cluster} via {redact(dsn)}" if args.cluster else redact(dsn)
    print(f"faceaudit migrate: {where} is at the latest schema", file=sys.stderr)
    if applied:
        print(f"applied now: {', '.join(map(str, applied))}", file=sys.stderr)
    return 0
