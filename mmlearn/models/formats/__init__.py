"""Prompt formats for families whose needs go beyond `ChatTemplatePrompt`."""
