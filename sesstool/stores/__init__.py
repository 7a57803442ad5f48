"""Session stores: one module per backend behind :class:`~sesstool.stores.base.Store`.

:func:`open_store` finds the class in :mod:`~sesstool.stores.registry`; drivers
(redis, pymemcache) are imported only when a store of that kind is opened.
"""

from __future__ import annotations

from sesstool.redact import redact_url
from sesstool.stores.base import Capability, Store, StoredItem
from sesstool.stores.registry import open_store

__all__ = ["Capability", "Store", "StoredItem", "open_store", "redact_url"]
