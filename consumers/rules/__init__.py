"""The rule catalogue (data) and one vectorized condition per rule (logic)."""
