"""The results: the machine they were measured on, `latest.json`, and the table in the docs."""

from __future__ import annotations

import json
import os
import platform
import re
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from bench import REPO_ROOT
from consumers.settings import Settings
from faceaudit.broker import kafka_version

RESULTS = REPO_ROOT / "bench" / "results" / "latest.json"
DOCS = REPO_ROOT / "docs" / "benchmarks.md"
BEGIN, END = "<!-- bench-results:begin -->", "<!-- bench-results:end -->"


def machine() -> dict:
    settings = Settings.resolve({})
    return {
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
        "python": platform.python_version(),
        **{
            name: version(name)
            for name in ("kafka-python", "chdb", "clickhouse-connect", "fastavro")
        },
        "kafka_broker": kafka_version(),
        "batch_size": settings.batch_size,
        "batch_seconds": settings.batch_seconds,
        "profile": settings.profile,
    }


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def write_json(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def update_docs(results: dict, path: Path = DOCS) -> None:
    """Replace the generated part of docs/benchmarks.md (between the markers) with `table`."""
    text = path.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    path.write_text(text[:start] + "\n" + table(results) + text[end:])


def table(r: dict) -> str:
    """The results as markdown: each figure, its target, and whether it met it."""
    m, latency, low = r["machine"], r["latency"], r["details"]["latency_low_rate"]
    gaps = r["sequence_gaps"]
    rows = [
        ("preload (simulator, 1 producer)", _rate(r["preload_events_per_s"]), ""),
        ("raw consumer (poll and discard)", _rate(r["raw_events_per_s"]), ""),
        ("raw consumer, SASL without TLS", _rate(r["raw_without_tls_events_per_s"]), ""),
        ("TLS: 1 - raw / raw without TLS", f"{r['tls_cost']:.1%}", ""),
        ("pipeline, 1 process", _rate(r["pipeline_events_per_s"]),
         _target(r["pipeline_events_per_s"], ">=", 60_000, "{:,}")),
        ("pipeline / raw", f"{r['ratio_pipeline_to_raw']:.2f}",
         _target(r["ratio_pipeline_to_raw"], ">=", 0.5)),
        ("pipeline, 1 process, `--trust none`", _rate(r["pipeline_trust_none_events_per_s"]), ""),
        ("signature checking: 1 - signed / `--trust none`", f"{r['signature_cost']:.1%}",
         _target(r["signature_cost"], "<=", 0.05, "{:.0%}")),
        ("pipeline, 1 process, `--digests off`", _rate(r["pipeline_digests_off_events_per_s"]),
         ""),
        ("digests: 1 - digested / `--digests off`", f"{r['digest_cost']:.1%}",
         _target(r["digest_cost"], "<=", 0.03, "{:.0%}")),
        ("digests: CPU per event, digested / `--digests off` - 1",
         _share(r.get("digest_cpu_cost")), ""),
        ("signatures: CPU per event, signed / `--trust none` - 1",
         _share(r.get("signature_cpu_cost")), ""),
        ("digests: ledger stage / CPU per event of the 1-process drain",
         _share(_ledger_share(r)), ""),
        (f"pipeline, 1 process, batches of {r['details']['small_batch']:,}",
         _rate(r["pipeline_small_batch_events_per_s"]), ""),
        ("AUDIT-SEQ-GAP found / injected, default batch",
         f"{gaps['found_default_batch']:,} / {gaps['injected']:,}",
         _exact(gaps["found_default_batch"], gaps["injected"])),
        (f"AUDIT-SEQ-GAP found / injected, batches of {r['details']['small_batch']:,}",
         f"{gaps['found_small_batch']:,} / {gaps['injected']:,}",
         _exact(gaps["found_small_batch"], gaps["injected"])),
        ("pipeline, 2 workers", _rate(r["pipeline_2w_events_per_s"]), ""),
        ("2 workers / 1", f"{r['ratio_2w_to_1w']:.2f}", _target(r["ratio_2w_to_1w"], ">=", 1.6)),
        (f"latency p50 at {_rate(latency['rate_sent'])}", _secs(r["latency_p50_s"]), ""),
        ("latency p99", _secs(r["latency_p99_s"]), _target(r["latency_p99_s"], "<=", 1, "{} s")),
        ("latency max", _secs(r["latency_max_s"]), ""),
        (f"latency p50 / p99 at {_rate(low['rate_sent'])}",
         f"{_secs(low['p50_s'])} / {_secs(low['p99_s'])}", ""),
        *((f"peak RSS, {run}", _mib(peaks), _target(_largest(peaks), "<=", 512, "{} MiB each"))
          for run, peaks in r["peak_rss_mib"].items()),
        ("`faceaudit check`", _rate(r["check_events_per_s"]),
         _target(r["check_events_per_s"], ">=", 250_000, "{:,}")),
        ("check / json.loads", f"{r['check_ratio_to_json_loads']:.2f}", ""),
        ("device gateway, batches of 100", _rate(r["gateway_events_per_s"]), ""),
        ("gateway / producer SDK", f"{r['gateway_ratio_to_sdk']:.2f}", ""),
        ("gateway request p99 (100 records)", _secs(r["gateway_p99_s"]), ""),
        *((f"stage: {name}", f"{us:.1f} µs/event", "")
          for name, us in r["stage_us_per_event"].items() if name != "sample"),
        ("stage: decode + judge", f"{_decode_and_judge(r):.1f} µs/event",
         _target(_decode_and_judge(r), "<=", 3, "{} µs/event")),
    ]  # fmt: skip
    lines = [
        f"{r['events']:,} events, measured {r['date']} on {m['cores']} cores ({m['cpu']}), "
        f"Python {m['python']}, kafka-python {m['kafka-python']}, chDB {m['chdb']}, "
        f"Kafka {m['kafka_broker']}.",
        "",
        "| measure | result | target |",
        "|---|---:|---|",
        *(f"| {name} | {value} | {target} |" for name, value, target in rows),
        "",
    ]
    return "\n".join(lines)


def _ledger_share(r: dict) -> float | None:
    """The digests' own work (hashing the rows, storing the ledger) as a share of all the CPU
    a digested drain spends per event: a figure of one process, free of the drains' spread."""
    ledger = r["stage_us_per_event"].get("ledger")
    cpu = r["details"]["pipeline_1w"].get("cpu_us_per_event")
    return None if ledger is None or cpu is None else ledger / cpu


def _decode_and_judge(r: dict) -> float:
    stages = r["stage_us_per_event"]
    return round(stages["decode"] + stages["judge"], 1)


def _rate(value: float) -> str:
    return f"{value:,.0f} events/s"


def _share(value: float | None) -> str:
    """A cost as a percentage; older results have no CPU figures."""
    return "not measured" if value is None else f"{value:.1%}"


def _secs(value: float) -> str:
    return f"{value:.3f} s"


def _mib(peaks: dict[str, float]) -> str:
    """The total; for several processes, each one's peak too."""
    parts = {name: mib for name, mib in peaks.items() if name != "total"}
    each = f" ({', '.join(f'{n} {v:,.0f}' for n, v in parts.items())})" if len(parts) > 1 else ""
    return f"{peaks['total']:,.0f} MiB{each}"


def _largest(peaks: dict[str, float]) -> float:
    """The largest single process: the bound is per process, not for a run's total."""
    return max(mib for name, mib in peaks.items() if name != "total")


def _target(value: float, op: str, target: float, fmt: str = "{}") -> str:
    met = value >= target if op == ">=" else value <= target
    return f"{'≥' if op == '>=' else '≤'} {fmt.format(target)}: {'met' if met else '**missed**'}"


def _exact(found: int, injected: int) -> str:
    return f"= injected: {'met' if found == injected else '**missed**'}"


def _cpu_model() -> str:
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    found = re.search(r"^model name\s*:\s*(.+)$", info, re.MULTILINE)
    return found[1].strip() if found else platform.processor() or "unknown"
