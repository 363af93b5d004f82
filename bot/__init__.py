"""The running bot: settings, the core service, generation, platform adapters, the
retraining schedule and hot reload, and the ``thumbtune`` command.

Stands on ``storage``; reaches the trainer only through the light modules of
``trainer.PUBLIC`` (tests/test_architecture.py checks).
"""
