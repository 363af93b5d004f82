"""The running bot: settings, the core service, generation, platform adapters, the
retraining schedule and hot reload, and the ``thumbtune`` command.

Stands on ``storage``; reaches the trainer only through ``trainer.config``,
``trainer.export`` and ``trainer.requirements`` (tests/test_architecture.py checks).
"""
