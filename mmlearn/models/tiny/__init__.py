"""Tiny random checkpoints built offline, saved once, then loaded like real ones."""
