"""`make bench` itself: the harness must produce every figure, whatever the figures are.

Benchmarks are not tests, so nothing here asserts a speed. What is asserted:
a quick run on its own real broker and chDB stores finishes, stores every
preloaded event in both pipeline runs, and writes each result the benchmark
promises; the drain rate and the docs table are computed as documented.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench import REPO_ROOT
from bench.pipeline import _drain
from bench.report import BEGIN, END, update_docs

QUICK_EVENTS = 2_000
BENCH = (sys.executable, "-m", "bench.run")


def test_the_drain_rate_runs_from_the_first_stored_batch_to_the_last() -> None:
    started = 100.0
    samples = [(101.0, 0), (102.0, 0), (103.0, 400), (104.0, 900), (105.0, 1_400)]
    drain = _drain(samples, started)
    # Start-up (nothing stored until 103) is left out; the first batch is not counted.
    assert drain.events == 1_000
    assert drain.seconds == pytest.approx(2.0)
    assert drain.wall_seconds == pytest.approx(5.0)
    assert drain.events_per_second == pytest.approx(500.0)


def test_a_drain_stored_in_one_batch_is_timed_from_the_start() -> None:
    drain = _drain([(101.0, 0), (104.0, 600)], started=100.0)
    assert (drain.events, drain.seconds) == (600, pytest.approx(4.0))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, str]:
    """One `python -m bench.run --quick`: its results, and the docs' digest before and after."""
    output = tmp_path_factory.mktemp("bench") / "quick.json"
    docs = REPO_ROOT / "docs" / "benchmarks.md"
    before = hashlib.sha256(docs.read_bytes()).hexdigest()
    run = subprocess.run(
        [*BENCH, "--quick", "--events", str(QUICK_EVENTS), "--output", str(output)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    after = hashlib.sha256(docs.read_bytes()).hexdigest()
    return json.loads(output.read_text()), before, after


@pytest.mark.integration
def test_a_quick_bench_writes_every_figure_the_benchmark_promises(quick_run) -> None:
    results, _, _ = quick_run
    assert results["events"] == QUICK_EVENTS
    for key in ("raw_events_per_s", "pipeline_events_per_s", "pipeline_2w_events_per_s"):
        assert results[key] > 0, key
    assert results["ratio_pipeline_to_raw"] == pytest.approx(
        results["pipeline_events_per_s"] / results["raw_events_per_s"], abs=0.001
    )
    assert 0 < results["latency_p50_s"] <= results["latency_p99_s"] <= results["latency_max_s"]
    assert {"cores", "cpu", "python", "kafka_broker", "batch_size"} <= results["machine"].keys()
    stages = results["stage_us_per_event"]
    assert stages["total"] == pytest.approx(
        stages["decode"] + stages["judge"] + stages["insert"], abs=0.2
    )
    assert stages["ledger"] > 0
    assert results["check_events_per_s"] > 0
    gateway = results["details"]["gateway"]
    assert gateway["requests"] * 100 >= gateway["events"] > 0
    assert results["gateway_events_per_s"] > 0 and results["gateway_p99_s"] > 0
    assert results["gateway_ratio_to_sdk"] == pytest.approx(
        gateway["events_per_s"] / gateway["sdk_events_per_s"], rel=0.02
    )


@pytest.mark.integration
def test_each_pipeline_run_stores_every_preloaded_event(quick_run) -> None:
    details = quick_run[0]["details"]
    for run in ("pipeline_2w", "pipeline_small_batch"):
        assert details[run]["stored_events"] == QUICK_EVENTS, run
    for run in ("pipeline_1w", "pipeline_trust_none", "pipeline_digests_off"):
        assert [each["stored_events"] for each in details[run]["runs"]] == [QUICK_EVENTS] * 2


@pytest.mark.integration
def test_the_costs_are_ratios_of_the_means_of_paired_runs(quick_run) -> None:
    """Signed, `--trust none` and `--digests off` each run twice (A B C C B A)."""
    results = quick_run[0]
    means = {}
    for run in ("pipeline_1w", "pipeline_trust_none", "pipeline_digests_off"):
        rates = [each["events_per_s"] for each in results["details"][run]["runs"]]
        means[run] = results["details"][run]["events_per_s"]
        assert means[run] == pytest.approx(sum(rates) / 2, abs=1), run
    assert results["pipeline_events_per_s"] == means["pipeline_1w"]
    assert results["digest_cost"] == pytest.approx(
        1 - means["pipeline_1w"] / means["pipeline_digests_off"], abs=0.001
    )
    assert results["signature_cost"] == pytest.approx(
        1 - means["pipeline_1w"] / means["pipeline_trust_none"], abs=0.001
    )


@pytest.mark.integration
def test_the_cpu_costs_are_ratios_of_the_mean_cpu_per_event(quick_run) -> None:
    results = quick_run[0]
    cpu = {}
    for run in ("pipeline_1w", "pipeline_trust_none", "pipeline_digests_off"):
        each = [r["cpu_us_per_event"] for r in results["details"][run]["runs"]]
        assert all(us > 0 for us in each), run  # a validator spends CPU on every event
        cpu[run] = results["details"][run]["cpu_us_per_event"]
        assert cpu[run] == pytest.approx(sum(each) / 2, abs=0.01), run
    assert results["digest_cpu_cost"] == pytest.approx(
        cpu["pipeline_1w"] / cpu["pipeline_digests_off"] - 1, abs=0.001
    )
    assert results["signature_cpu_cost"] == pytest.approx(
        cpu["pipeline_1w"] / cpu["pipeline_trust_none"] - 1, abs=0.001
    )


@pytest.mark.integration
def test_the_drains_find_exactly_the_sequence_gaps_the_fleet_injected(quick_run) -> None:
    gaps = quick_run[0]["sequence_gaps"]
    assert gaps["found_default_batch"] == gaps["injected"] == gaps["found_small_batch"]


@pytest.mark.integration
def test_the_two_worker_run_measures_each_process(quick_run) -> None:
    results, _, _ = quick_run
    peaks = results["peak_rss_mib"]
    assert {"main", "worker-1", "worker-2"} <= peaks["pipeline_2w"].keys()
    assert peaks["pipeline_1w"]["main"] > 0
    assert peaks["pipeline_2w"]["total"] == pytest.approx(
        sum(mib for name, mib in peaks["pipeline_2w"].items() if name != "total"), abs=0.5
    )


@pytest.mark.integration
def test_a_quick_run_leaves_the_docs_alone(quick_run) -> None:
    _, before, after = quick_run
    assert before == after


def test_the_docs_table_replaces_only_the_marked_part(tmp_path: Path) -> None:
    latest = json.loads((REPO_ROOT / "bench" / "results" / "latest.json").read_text())
    docs = tmp_path / "benchmarks.md"
    docs.write_text(f"# Benchmarks\n\nbefore\n{BEGIN}\nold table\n{END}\n\nafter\n")
    update_docs(latest, docs)
    text = docs.read_text()
    assert text.startswith("# Benchmarks\n\nbefore\n")
    assert text.endswith(f"{END}\n\nafter\n")
    assert "old table" not in text
    assert f"| pipeline, 1 process | {latest['pipeline_events_per_s']:,} events/s |" in text
