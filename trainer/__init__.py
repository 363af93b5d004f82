"""The training side: votes -> dataset -> TRL's KTO -> eval gate -> registry, in its own process.

Stands on ``storage`` and never imports the bot. The bot uses only its light public
surface: ``config`` (the options of a run, the one place they are declared), ``export``
and ``requirements`` (what the ``train`` extra provides), and runs ``python -m trainer
run`` as a subprocess (tests/test_architecture.py checks).
"""
