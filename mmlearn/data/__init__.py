"""Data: readers for each on-disk layout, a Lightning DataModule and the collators."""
