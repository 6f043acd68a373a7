"""The machine's state machine and profile: pure, no I/O; one table decides (TRANSITIONS)."""
