"""Contracts shared by every service: messages, tool models, settings, keys. No business rules."""
