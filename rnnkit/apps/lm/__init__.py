"""Language modelling and text generation: ``rnnkit lm train | sample | eval``."""


from . import export  # noqa: E402,F401  (registers the exporters with rnnkit.interop)


def load(directory, which: str = "best"):
    """The trained language model of a run folder as a `TextModel` (``generate``, ``evaluate``)."""
    from .generate import TextModel
    from .train import load_model

    return TextModel(*load_model(directory, which))
