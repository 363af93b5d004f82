"""The training side: votes -> dataset -> TRL's KTO -> eval gate -> registry, in its own process.

Stands on ``storage`` and never imports the bot. The bot uses only its light public
surface, :data:`PUBLIC` (the options of a run, the dataset's shape, the snapshot files,
exports, what the ``train`` extra provides), and runs ``python -m trainer run`` as a
subprocess (tests/test_architecture.py checks).
"""

PUBLIC = (
    "trainer.config",
    "trainer.dataset",
    "trainer.export",
    "trainer.progress",
    "trainer.requirements",
    "trainer.snapshot",
)
"""The trainer's modules the bot may import: light ones (the standard library, fsspec,
pydantic and storage), so the bot runs without the train extra. Declared here only;
tests/test_architecture.py enforces it."""
