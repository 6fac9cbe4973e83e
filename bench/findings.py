"""What a validator run stored, counted by rule: the sequence gaps against the injected ones.

The count runs in a child process: chDB opens one store per process, and
the benchmark process has opened others.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

from bench import BenchError

_COUNT = """
import json, sys
import clickhouse_connect
client = clickhouse_connect.get_client(dsn=sys.argv[1])
rows = client.query("SELECT rule_id, count() FROM faceaudit.violations GROUP BY rule_id")
print(json.dumps(dict(rows.result_rows)))
"""


def violations_by_rule(dsn: str) -> Counter[str]:
    """Violations stored in the chDB store at `dsn`, by rule id."""
    child = subprocess.run(
        [sys.executable, "-c", _COUNT, dsn], capture_output=True, text=True, timeout=300
    )
    if child.returncode != 0:
        raise BenchError(f"cannot count the violations in {dsn}: {child.stderr[-1000:]}")
    return Counter(json.loads(child.stdout))
