"""The verifiable trail: row hashes, the ledger, signed digests, and checking the store."""
