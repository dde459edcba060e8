"""Durable storage (SQL) for contexts, artifacts and accounting."""

from sleeptime.store.sql import SQLStore, content_hash

__all__ = ["SQLStore", "content_hash"]
