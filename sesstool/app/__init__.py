"""The app layer: settings read from a Flask app (``--app``) and ``replay``."""
