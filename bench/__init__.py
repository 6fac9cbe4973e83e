"""`make bench`: throughput, latency and memory of the pipeline, measured in one run.

`python -m bench.run` starts its own broker and stores (`bench.cluster`), preloads
the topics (`bench.load`), then measures the plain client (`bench.raw`), the
validator end to end (`bench.pipeline`, `bench.latency`), the cost of each stage
(`bench.stages`) and the offline checker (`bench.offline`); `bench.report` writes
`bench/results/latest.json` and the table in `docs/benchmarks.md`.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


class BenchError(RuntimeError):
    """A measurement could not be taken; the message says why (and shows the process's log)."""
