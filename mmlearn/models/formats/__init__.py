"""Prompt formats of families without a chat template (same interface as `ChatTemplatePrompt`)."""
