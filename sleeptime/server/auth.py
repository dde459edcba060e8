"""Tenant API keys: ``Authorization: Bearer KEY``.

A key is shown once, when it is created; the store keeps only its SHA-256. A tenant
key opens the routes of one namespace; an admin key opens every route (operator routes
included). No key, or a key the store does not know: 401. A tenant key on another
namespace or on an operator route: 403.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sleeptime.api import check_ids
from sleeptime.store.sql import SQLStore

#: Every key starts with this, so a leaked key is recognisable in logs and scanners.
KEY_PREFIX = "stk_"


@dataclass(frozen=True)
class Principal:
    """Who a request's key belongs to."""

    key_id: str
    namespace: str  # "" for an admin key
    admin: bool

    def may_use(self, namespace: str) -> bool:
        return self.admin or self.namespace == namespace


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(store: SQLStore, namespace: str | None, *, admin: bool = False) -> tuple[str, str]:
    """A new key for ``namespace`` (or an admin key); returns (key id, key). The key
    itself is not stored anywhere: print it once."""
    if admin:
        namespace = ""
    else:
        if namespace is None:
            from sleeptime.errors import InvalidInput

            raise InvalidInput("a tenant key needs a namespace (or use --admin)")
        check_ids(namespace, "-")
    key_id = secrets.token_hex(4)
    key = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
    store.add_api_key(hash_key(key), key_id, namespace or "", admin=admin)
    return key_id, key


def authenticate(store: SQLStore, key: str) -> Principal | None:
    """The principal of ``key``, or None when it is unknown (or revoked)."""
    if not key.startswith(KEY_PREFIX):
        return None
    owner = store.find_api_key(hash_key(key))
    if owner is None:
        return None
    namespace, admin = owner
    key_id = key[len(KEY_PREFIX) :].split("_", 1)[0]
    return Principal(key_id=key_id, namespace=namespace, admin=admin)
