"""sesstool: inspect and administer Flask sessions.

The library can be used without the CLI: open a store with
:func:`sesstool.stores.open_store`, decode values with :mod:`sesstool.codecs.serializers`,
and decode cookies with :mod:`sesstool.cookies.format`. The packages follow the
layers: ``stores`` (backends), codecs, ``cookies``, ``ops`` (operations), ``app``
(``--app`` and replay), ``render`` (output) and ``cli``; see docs/architecture.md.
"""

__version__ = "0.1.0"
