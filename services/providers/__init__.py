"""Provider modules: one per payment provider or outbound system, each behind a small interface."""
