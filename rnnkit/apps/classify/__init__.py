"""Sequence classification: ``rnnkit classify make-data | train | eval | predict``."""


from . import export  # noqa: E402,F401  (registers the exporter with rnnkit.interop)


def load(directory, which: str = "best"):
    """The trained classifier of a run folder as a `Classifier` (``predict``, ``evaluate``)."""
    from .train import load_model

    return load_model(directory, which)
