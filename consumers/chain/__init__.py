"""The validator's chain of batch steps: decode → judge → gather → store → publish → commit.

Each step is a small class with one job behind the `Step` interface: it takes
a batch in `submit`, does its work and hands the batch to the next step. The
read step in front (`consumers.read`) fills each batch; the registry feed
keeps the registry current beside the chain (a side input) and stores
its rows on a path of their own. A rebalance
closes the chain and the validator builds a new one for the new assignment,
so the state that belongs to an assignment (devices' sequences, held events,
what the store and the violations topic already hold) lives and dies with it.
`docs/reliability.md` gives the exactly-once argument step by step.
"""
