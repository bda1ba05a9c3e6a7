"""Requests and tokens per minute per user, team and API key, shared by every process through Redis."""
