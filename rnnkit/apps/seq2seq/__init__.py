"""Sequence-to-sequence translation with attention: ``rnnkit translate``."""


def load(directory, which: str = "best"):
    """The trained translator of a run folder as a `Translator` (``translate``, ``evaluate``)."""
    from .train import load_model

    return load_model(directory, which)
