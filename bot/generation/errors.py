"""The failures generation reports to its callers; each message is fit to show a person."""

from __future__ import annotations


class GenerationError(Exception):
    """Generation could not answer; the message is fit to show a person."""


class GeneratorBusy(GenerationError):
    def __init__(self) -> None:
        super().__init__("I'm busy answering other people right now, try again shortly.")


class GenerationTimeout(GenerationError):
    def __init__(self, seconds: float) -> None:
        super().__init__(f"Sorry, that took longer than {seconds:g} s; please try again.")


class ModelLoadError(GenerationError):
    """A model could not be loaded or failed its warm-up sample."""


class EngineUnavailable(GeneratorBusy):
    """No server of the engine can answer now (down, or still loading the current version)."""

    def __init__(self) -> None:
        GenerationError.__init__(self, "I can't reach my model server right now; please try again shortly.")
