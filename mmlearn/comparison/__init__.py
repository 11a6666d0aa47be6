"""Comparing evaluation modes (zero-shot, few-shot, fine-tuned) on the same split, prompt and parser:
bootstrap intervals per mode and paired differences against a reference mode."""

from mmlearn.comparison.report import write_report

__all__ = ["write_report"]
