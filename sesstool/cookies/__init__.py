"""Flask's signed cookie sessions and Flask-Session's signed ids.

``format`` reads and writes cookie values, ``flaskjson`` is Flask's tagged JSON,
``signing`` holds the itsdangerous rules, ``sids`` the signed session ids,
``fetch`` gets a cookie from a URL, and ``crack`` searches a wordlist for the key.
"""
