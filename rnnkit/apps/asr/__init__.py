"""Speech recognition with CTC: ``rnnkit asr``."""


def load(directory, which: str = "best"):
    """The trained recogniser of a run folder as a `Recognizer` (``transcribe``, ``evaluate``)."""
    from .train import load_model

    return load_model(directory, which)
