"""sesstool: inspect and administer Flask sessions.

The library can be used without the CLI: open a store with
:func:`sesstool.stores.open_store`, decode values with :mod:`sesstool.serializers`,
and decode cookies with :mod:`sesstool.cookies`.
"""

__version__ = "0.1.0"
