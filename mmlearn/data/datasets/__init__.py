"""Readers for each dataset's original on-disk layout."""
