"""PartitionAligner: which partitions it pauses and resumes (a recording stand-in consumer)."""

from __future__ import annotations

from kafka import TopicPartition

from consumers.alignment import PartitionAligner

CAPTURES = TopicPartition("captures", 0)
MATCHES = TopicPartition("matches", 0)
OTHER = TopicPartition("captures", 1)


class RecordingConsumer:
    """Holds the assignment, the high watermarks and the paused set, as the client does."""

    def __init__(self, ends: dict[TopicPartition, int | None]) -> None:
        self.ends = ends
        self._paused: set[TopicPartition] = set()

    def assignment(self) -> set[TopicPartition]:
        return set(self.ends)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused.difference_update(partitions)

    def highwater(self, partition: TopicPartition) -> int | None:
        return self.ends[partition]


def aligner_at(times: dict[TopicPartition, int], lead: float = 1.0) -> PartitionAligner:
    """An aligner that has read offset 100 of each partition, at these timestamps (ms)."""
    aligner = PartitionAligner(max_lead_seconds=lead)
    for tp, timestamp in times.items():
        aligner.start(tp, 0)
        aligner.read(tp, 100, timestamp)
    return aligner


def test_a_partition_ahead_of_the_slowest_by_more_than_the_lead_is_paused() -> None:
    consumer = RecordingConsumer({CAPTURES: 1000, MATCHES: 1000})
    aligner_at({CAPTURES: 10_000, MATCHES: 11_001}).align(consumer, part_read=None)
    assert consumer.paused() == {MATCHES}


def test_a_partition_within_the_lead_keeps_reading() -> None:
    consumer = RecordingConsumer({CAPTURES: 1000, MATCHES: 1000})
    aligner_at({CAPTURES: 10_000, MATCHES: 11_000}).align(consumer, part_read=None)
    assert consumer.paused() == set()


def test_a_paused_partition_resumes_once_the_slowest_catches_up() -> None:
    consumer = RecordingConsumer({CAPTURES: 1000, MATCHES: 1000})
    aligner = aligner_at({CAPTURES: 10_000, MATCHES: 15_000})
    aligner.align(consumer, part_read=None)
    aligner.read(CAPTURES, 200, 14_500)
    aligner.align(consumer, part_read=None)
    assert consumer.paused() == set()


def test_a_partition_read_to_its_end_holds_no_one_back() -> None:
    consumer = RecordingConsumer({CAPTURES: 100, MATCHES: 1000})
    aligner_at({CAPTURES: 10_000, MATCHES: 60_000}).align(consumer, part_read=None)
    assert consumer.paused() == set()


def test_the_slowest_partition_is_never_paused() -> None:
    consumer = RecordingConsumer({CAPTURES: 1000, MATCHES: 1000, OTHER: 1000})
    aligner = aligner_at({CAPTURES: 5_000, MATCHES: 9_000, OTHER: 7_000}, lead=0.5)
    aligner.align(consumer, part_read=None)
    assert consumer.paused() == {MATCHES, OTHER}


def test_an_unknown_high_watermark_counts_as_records_left_to_read() -> None:
    consumer = RecordingConsumer({CAPTURES: None, MATCHES: 1000})
    aligner_at({CAPTURES: 10_000, MATCHES: 20_000}).align(consumer, part_read=None)
    assert consumer.paused() == {MATCHES}


def test_a_partition_not_read_yet_holds_every_other_back() -> None:
    consumer = RecordingConsumer({CAPTURES: 1000, MATCHES: None})
    aligner = aligner_at({CAPTURES: 10_000})
    aligner.start(MATCHES, 0)
    aligner.align(consumer, part_read=None)
    assert consumer.paused() == {CAPTURES}
    aligner.read(MATCHES, 50, 10_200)
    aligner.align(consumer, part_read=None)
    assert consumer.paused() == set()


def test_a_partition_not_read_yet_at_its_end_holds_no_one_back() -> None:
    consumer = RecordingConsumer({CAPTURES: 1000, MATCHES: 40})
    aligner = aligner_at({CAPTURES: 10_000})
    aligner.start(MATCHES, 40)  # its commit is the end of its log
    aligner.align(consumer, part_read=None)
    assert consumer.paused() == set()


def test_a_partition_rewound_to_its_commit_holds_others_back_until_read_again() -> None:
    consumer = RecordingConsumer({CAPTURES: 1000, MATCHES: 1000})
    aligner = aligner_at({CAPTURES: 10_000, MATCHES: 10_500})
    aligner.start(CAPTURES, 20)  # rewound: its old timestamp no longer says where it is
    aligner.align(consumer, part_read=None)
    assert consumer.paused() == {MATCHES}


def test_a_revoked_partition_no_longer_holds_others_back() -> None:
    consumer = RecordingConsumer({CAPTURES: 1000, MATCHES: 1000})
    aligner = aligner_at({CAPTURES: 10_000, MATCHES: 20_000})
    aligner.align(consumer, part_read=None)
    aligner.forget([CAPTURES])
    aligner.align(consumer, part_read=None)
    assert consumer.paused() == set()


def test_records_without_timestamps_leave_their_partition_out() -> None:
    consumer = RecordingConsumer({CAPTURES: 1000, MATCHES: 1000, OTHER: 1000})
    aligner = aligner_at({CAPTURES: 10_000, MATCHES: 20_000})
    aligner.start(OTHER, 0)
    aligner.read(OTHER, 100, -1)
    aligner.align(consumer, part_read=None)
    assert consumer.paused() == {MATCHES}


def test_an_older_timestamp_does_not_move_a_partition_back() -> None:
    consumer = RecordingConsumer({CAPTURES: 1000, MATCHES: 1000})
    aligner = aligner_at({CAPTURES: 10_000, MATCHES: 20_000})
    aligner.read(MATCHES, 101, 10_500)  # a producer's clock stepped back
    aligner.align(consumer, part_read=None)
    assert consumer.paused() == {MATCHES}


def test_partitions_no_longer_assigned_are_left_alone() -> None:
    consumer = RecordingConsumer({CAPTURES: 1000})
    aligner_at({CAPTURES: 10_000, MATCHES: 20_000}).align(consumer, part_read=None)
    assert consumer.paused() == set()


def test_the_partition_a_full_poll_may_have_left_part_read_is_not_paused() -> None:
    consumer = RecordingConsumer({CAPTURES: 1000, MATCHES: 1000, OTHER: 1000})
    aligner = aligner_at({CAPTURES: 10_000, MATCHES: 20_000, OTHER: 20_000})
    aligner.align(consumer, part_read=MATCHES)
    assert consumer.paused() == {OTHER}


def test_a_partition_is_resumed_even_when_part_read() -> None:
    consumer = RecordingConsumer({CAPTURES: 1000, MATCHES: 1000})
    aligner = aligner_at({CAPTURES: 10_000, MATCHES: 20_000})
    aligner.align(consumer, part_read=None)
    aligner.read(CAPTURES, 200, 19_900)
    aligner.align(consumer, part_read=CAPTURES)
    assert consumer.paused() == set()
