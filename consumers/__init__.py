"""Audit side: the validating consumer, its rule engine, registries and ClickHouse sink."""
