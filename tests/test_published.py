"""The violations topic's mark in commit metadata, and the outbox leaving out what was published."""

from __future__ import annotations

import pytest

from consumers.published import decode_mark, encode_mark, source_headers
from consumers.publisher import Outbox, Outgoing

CAPTURE = "faceaudit.events.v1"


def test_a_mark_survives_commit_metadata() -> None:
    mark = {0: 17, 3: 0, 5: 123_456_789}
    assert decode_mark(encode_mark(mark)) == mark


NO_MARK = [None, "", "not json", "[]", '{"other": 1}', '{"violations_topic_mark": 3}']


@pytest.mark.parametrize("metadata", NO_MARK)
def test_metadata_without_a_mark_reads_as_none(metadata: str | None) -> None:
    assert decode_mark(metadata) is None


def test_a_mark_of_many_partitions_fits_the_brokers_metadata_limit() -> None:
    assert len(encode_mark({p: 10**15 for p in range(100)})) < 4096


def test_source_headers_name_the_event_position() -> None:
    assert source_headers(CAPTURE, 2, 41) == [
        ("faceaudit.source.topic", CAPTURE.encode()),
        ("faceaudit.source.partition", b"2"),
        ("faceaudit.source.offset", b"41"),
    ]


def violation(violation_id: str, partition: int, offset: int) -> Outgoing:
    return Outgoing(CAPTURE, partition, offset, violation_id, b"", violation_id.encode(), [])


def test_outbox_leaves_out_violations_already_published() -> None:
    outbox = Outbox()
    outbox.add(
        {
            "violations": [violation("a", 0, 5), violation("b", 0, 6), violation("c", 1, 5)],
            "dead_letters": [],
        }
    )
    outbox.already_published({(CAPTURE, 0): {"a"}, (CAPTURE, 1): {"a"}})
    due = outbox.take_due({(CAPTURE, 0): 10, (CAPTURE, 1): 10})
    assert [v.violation_id for v in due["violations"]] == ["b", "c"]


def test_outbox_keeps_violations_past_the_commit_until_it_moves() -> None:
    outbox = Outbox()
    outbox.add({"violations": [violation("a", 0, 5), violation("b", 0, 9)], "dead_letters": []})
    outbox.already_published({(CAPTURE, 0): {"a"}})
    assert outbox.take_due({(CAPTURE, 0): 9})["violations"] == []
    assert [v.violation_id for v in outbox.take_due({(CAPTURE, 0): 10})["violations"]] == ["b"]


def test_outbox_hands_on_what_a_commit_passed_in_offset_order_and_keeps_the_rest() -> None:
    outbox = Outbox()
    late = [violation("late", 0, 3)]  # a held event judged after later ones
    outbox.add({"violations": [violation("a", 0, 8), violation("b", 0, 12)], "dead_letters": []})
    outbox.add({"violations": late, "dead_letters": [violation("d", 1, 4)]})
    due = outbox.take_due({(CAPTURE, 0): 10, (CAPTURE, 1): 4})
    assert [v.violation_id for v in due["violations"]] == ["late", "a"]
    assert due["dead_letters"] == []
    due = outbox.take_due({(CAPTURE, 0): 13, (CAPTURE, 1): 5})
    assert [v.violation_id for v in due["violations"]] == ["b"]
    assert [r.violation_id for r in due["dead_letters"]] == ["d"]
    assert outbox.take_due({})["violations"] == []
