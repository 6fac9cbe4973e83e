"""The validator: a read loop in front of a chain of batch steps.

Each turn reads the registry feed (the side input), reads one batch from the
consumer group, and submits it to the chain: decode → judge → gather →
store → publish → commit (`consumers.chain`). When the group assigns partitions, the
chain is built for them: what the store already holds past their commits,
where their devices' sequences stand, and what the violations topic already
carries of them. `docs/reliability.md` explains why that gives exactly-once
results.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path

from kafka.structs import OffsetAndMetadata, TopicPartition

from consumers.batch import Batch
from consumers.chain.commit import CommitStep
from consumers.chain.decode import DecodeStep
from consumers.chain.gather import GatherStep
from consumers.chain.judge import EventClock, JudgeStep
from consumers.chain.mask import MaskStep
from consumers.chain.publish import PublishStep
from consumers.chain.step import Step
from consumers.chain.store import StoreStep
from consumers.checkpoints import CheckpointJudge
from consumers.collector import collecting_in_batches
from consumers.dead_letters import DeadLetterPolicy
from consumers.judge import Judge
from consumers.key_feed import KeyFeed
from consumers.keyring import KeyRing
from consumers.masking import IdentifierMask, load_mask_key
from consumers.metrics import PipelineMetrics
from consumers.processor_regions import ProcessorRegions
from consumers.published import PublishedLog, decode_mark, encode_mark
from consumers.publisher import FindingsPublisher, Outbox
from consumers.read import GroupReader, Taken, group_consumer
from consumers.registry import Registry
from consumers.registry_feed import RegistryFeed
from consumers.settings import Settings
from consumers.store_gateway import StoreGateway
from consumers.stored_tail import StoredTail
from consumers.summary import RunSummary, RunTimer
from consumers.trail.digests import Digest, DigestChain
from core.errors import FaceauditError
from schemas.signatures import Signer

READ_SECONDS = 0.05
"""The longest a turn reads before its messages are decoded and judged; the
gather step stores them together by `--batch-size` and `--batch-seconds`."""


class Validator:
    """One validator process: a member of the consumer group plus the registry feed."""

    def __init__(
        self,
        settings: Settings,
        store: StoreGateway,
        metrics: PipelineMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or PipelineMetrics()
        self.summary = RunSummary()
        self.judge = Judge(settings.profile, Registry())
        self.metrics.describe_rules(self.judge.catalogue, settings.profile)
        for deletion in store.deletions():
            self.judge.observe_deletion(deletion)
        self._store = store
        self._mask = IdentifierMask(load_mask_key(settings.mask_key_file))
        self._stop = threading.Event()
        self._timer = RunTimer()
        self._last_message = time.monotonic()
        self._clock = EventClock()
        self._reported = set(store.eventless_violations())
        self._regions = ProcessorRegions(store.processor_regions())
        self._policy = DeadLetterPolicy(
            settings.dead_letter_max_consecutive, settings.dead_letter_max_ratio
        )
        self._reader = GroupReader(
            group_consumer(settings), settings.bootstrap, self._revoked, settings.kafka
        )
        signed = settings.trust == "signatures"
        self.metrics.signatures_required.set(1 if signed else 0)
        self._keys = KeyFeed(settings.kafka, KeyRing()) if signed else None
        self._feed = RegistryFeed(
            settings.kafka,
            self.judge,
            self.metrics,
            stored=store.registry_offsets(),
            max_message_bytes=settings.max_message_bytes,
            keys=self._keys,
        )
        self._publisher = FindingsPublisher(settings.kafka)
        self._published_log = PublishedLog(settings.kafka)
        self._digests = self._digest_chain()
        self.chain = self._build_chain({}, {}, Outbox())
        # The registry rows' path ends without a commit: they have no offsets in the group.
        nothing_to_commit = CommitStep(self._reader.commit, {})
        publish = PublishStep(nothing_to_commit, self._publisher, Outbox())
        self._registry_path = self._store_step(publish, {})

    def stop(self) -> None:
        """Ask the loop to finish its batch, commit and return (signal-safe)."""
        self._stop.set()

    def run(self) -> RunSummary:
        """Consume until stopped, or until no message arrived for `until_idle` seconds."""
        with collecting_in_batches():
            try:
                self._run()
            finally:
                self.summary.seconds = self._timer.seconds
                self._feed.close()
                self._publisher.close()
                self._published_log.close()
                self._reader.close()
        return self.summary

    def _run(self) -> None:
        self._feed.catch_up(self._registry_path.submit, limit=self.settings.batch_size)
        self._last_message = time.monotonic()
        while not self._stop.is_set():
            self._turn()
            self._reader.report_lag(self.metrics)
            if self._drained():
                # Drained: the end of the input, as for the offline checker.
                self.chain.join(end_of_input=True)
                self._last_digest()
                return
        # Stopped by a signal: events still waiting for a registry record are
        # judged with what is known, so nothing stays held.
        self.chain.join(end_of_input=False)
        self._last_digest()

    def _last_digest(self) -> None:
        """A clean stop covers all that was stored with a last digest."""
        if self._digests is not None:
            self._digests.flush()

    def _turn(self) -> None:
        """Read one batch and submit it to the chain.

        No batch is on the stack while a consumer talks to the broker, here
        or in the caller (`GroupReader.read`).
        """
        settings = self.settings
        registry = self._store_registry()
        seconds = min(settings.batch_seconds, READ_SECONDS)
        batch = self._reader.read(settings.batch_size, seconds, self._stop, self._timer)
        if self._reader.assigned:
            self._take()
        if registry or batch.messages or not self._reader.owns_partitions():
            # Not idle while still joining the group: members killed
            # earlier hold the rebalance until their sessions expire.
            self._last_message = time.monotonic()
        self.chain.submit(batch)
        self.chain.poll()

    def _store_registry(self) -> int:
        """The side input: apply the registry records that arrived, and store their rows.

        They have a path of their own (store, then publish their dead
        letters), as they belong to no partition of the group: a rebalance
        does not drop them, and no commit waits for them.
        """
        rows = Batch()
        read = self._feed.apply(self._feed.fetch(), rows)
        if read:
            self._registry_path.submit(rows)
        return read

    def _drained(self) -> bool:
        """Quiet for `--until-idle` seconds, and every owned partition read to its end."""
        idle = self.settings.until_idle
        if idle is None or time.monotonic() - self._last_message < idle:
            return False
        return self._reader.read_to_the_end()

    # -- building the chain ---------------------------------------------------

    def _build_chain(
        self,
        commits: dict[TopicPartition, int],
        tails: dict[TopicPartition, StoredTail],
        outbox: Outbox,
    ) -> Step:
        """The chain for one assignment: the partitions at `commits`."""
        settings = self.settings
        sequences = self.judge.sequence_tracker()
        checkpoints = self.judge.checkpoint_tracker()
        for tp in commits:
            for processor, device, seq, digest in self._store.device_states(tp.partition):
                sequences.resume((processor, device), seq + 1, digest)
            checkpoints.resume(*self._store.checkpoint_state(tp.partition))
        commit = CommitStep(self._reader.commit, commits)
        publish = PublishStep(commit, self._publisher, outbox)
        store = self._store_step(publish, tails)
        gather = GatherStep(
            MaskStep(store, self._mask), settings.batch_size, settings.batch_seconds
        )
        judge = JudgeStep(
            gather,
            self.judge,
            sequences,
            CheckpointJudge(self.judge, self._keys, checkpoints),
            self._clock,
            commits,
            registry_grace=settings.registry_grace,
            max_held=settings.max_held,
            reported=self._reported,
            held_gauge=self.metrics.held,
        )
        return DecodeStep(judge, self._policy, settings.max_message_bytes)

    def _store_step(self, publish: Step, tails: dict[TopicPartition, StoredTail]) -> StoreStep:
        return StoreStep(
            publish,
            self._store,
            tails,
            metrics=self.metrics,
            summary=self.summary,
            timer=self._timer,
            stop=self._stop,
            backoff_max=self.settings.insert_backoff_max,
            regions=self._regions,
            digests=self._digests,
        )

    def _digest_chain(self) -> DigestChain | None:
        """The chain of signed digests over what this process stores, resumed from the store."""
        settings = self.settings
        if settings.digests == "off":
            return None
        if not settings.auditor_key:
            raise FaceauditError(
                "digests are signed with the auditor's key, and none was given: make one "
                "(faceaudit keys generate --owner auditor) and pass --auditor-key PATH "
                "(FACEAUDIT_AUDITOR_KEY), or turn them off with --digests off"
            )
        digests = DigestChain(
            settings.chain_name,
            Signer.from_pem_file(Path(settings.auditor_key)),
            self._store.digested_columns(),
            self._write_digest,
            settings.digest_interval,
        )
        digests.resume(self._store.chain_state(settings.chain_name))
        return digests

    def _write_digest(self, digest: Digest) -> None:
        self._store.write_digest(digest)
        self._publisher.publish_digest(digest)

    def _take(self) -> None:
        """Build the chain for the partitions just assigned, and read them from their commits."""
        taken = self._reader.take()
        if taken is None:
            return  # the broker cannot answer yet; taken after the next poll
        commits = {tp: meta.offset if meta is not None else 0 for tp, meta in taken.items()}
        outbox = Outbox()
        outbox.already_published(self._recall_published(taken, commits))
        tails = {tp: self._store.stored_tail(*tp, offset) for tp, offset in commits.items()}
        self.chain = self._build_chain(commits, tails, outbox)
        self._reader.rewind(commits)

    def _recall_published(self, taken: Taken, commits: dict[TopicPartition, int]) -> dict:
        """The violations the last owners of `taken` published past their commits.

        A commit that carries no mark (the group's first) gets one now,
        before anything of its partition is published.
        """
        ends = self._published_log.ends()
        self._publisher.raise_mark(ends)
        marks = {tp: decode_mark(meta.metadata if meta else None) for tp, meta in taken.items()}
        unmarked = {
            tp: OffsetAndMetadata(commits[tp], encode_mark(self._publisher.mark), -1)
            for tp, mark in marks.items()
            if mark is None
        }
        if unmarked:
            self._reader.commit(unmarked)
        marked = {tp: mark for tp, mark in marks.items() if mark is not None}
        if not marked:
            return {}
        start = {
            partition: min(mark.get(partition, 0) for mark in marked.values())
            for partition in set().union(*marked.values())
        }
        sources = {tp: commits[tp] for tp in marked}
        return self._published_log.published_since(start, ends, sources)

    def _revoked(self, partitions: set[TopicPartition], closing: bool) -> None:
        """The group took partitions: the chain's work is dropped; the next take builds anew."""
        self.chain.close()
        self.chain = self._build_chain({}, {}, Outbox())
        for tp in partitions:
            if not closing:  # its new owner reports its lag from now on
                with contextlib.suppress(KeyError):
                    self.metrics.lag.remove(tp.topic, str(tp.partition))
