"""The bottom layer, which the bot and the trainer both stand on.

- ``database``, ``repository``, ``identity``: the SQLite file (one connection, numbered
  migrations), every query, and the keyed hashes people are stored as;
- ``registry``: the trained model versions on disk and the atomic ``CURRENT`` pointer;
- ``dialogue``: the text format conversations are stored in and shown to a model, so the
  trainer learns on exactly what the bot showed.

Nothing here imports ``bot`` or ``trainer`` (tests/test_architecture.py checks).
"""
