"""Operations on sessions: what the commands do, independent of any store or output.

Each module takes a :class:`~sesstool.stores.base.Store` and decoded values and
yields records or counts; none prints or imports the renderer.
"""
