"""Codecs: stored bytes to Python values and back, and values to the tagged JSON form.

``serializers`` detects and decodes msgpack, json and pickle the way Flask-Session
wrote them, every decoder under ``budget``'s limits; ``safepickle`` (with
``safecalls``, ``standins`` and ``pickletree``) is the restricted unpickler and
``picklewriter`` its writer; ``tagged`` is the lossless JSON form of any value and
``fidelity`` what a re-encoding would lose; ``values`` holds the value types.
"""
