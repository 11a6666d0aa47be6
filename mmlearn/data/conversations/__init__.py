"""Conversation files (LLaVA, ShareGPT, OpenAI messages) read as multi-turn, multi-image samples."""

from mmlearn.data.conversations.sample import ConversationSample, Turn

__all__ = ["ConversationSample", "Turn"]
