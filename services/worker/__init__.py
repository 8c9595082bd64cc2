"""Outbound workers: one per provider, delivering the outbox and reconciling payments."""
