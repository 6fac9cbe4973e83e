"""The rule catalogue (data) and one small predicate per rule (logic)."""
