"""Readers for datasets in their original, as-downloaded layouts (no conversion step)."""
