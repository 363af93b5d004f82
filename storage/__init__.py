"""The bottom layer, which the bot and the trainer both stand on.

- ``database``, ``postgres``, ``repository``, ``identity``: the SQLite file or a PostgreSQL
  server (one connection per process, numbered migrations per dialect), every query, and
  the keyed hashes people are stored as;
- ``registry``: the trained model versions on disk and the atomic ``CURRENT`` pointer;
- ``dialogue``: the text format conversations are stored in and shown to a model, so the
  trainer learns on exactly what the bot showed.

Nothing here imports ``bot`` or ``trainer`` (tests/test_architecture.py checks).
"""

import storage.postgres  # noqa: F401  (registers the postgresql:// backend of storage.database.Database.open)

PRIVATE_UMASK = 0o077
"""The umask of every thumbtune process (`thumbtune`, `python -m trainer`): the folders
and files it makes (database, log, snapshots, versions, exports) are 0700 and 0600, for
people's texts are for the bot's account only."""
