"""lion_kit: LION (IJCAI 2023) semi-supervised facial expression recognition, made visible."""
from .data import load_dataset  # noqa: F401
from .labels import CLASSES, NUM_CLASSES  # noqa: F401

__version__ = "0.1.0"


def load_run(path):
    """Everything a run directory holds, for notebooks (see lion_kit.runs.Run)."""
    from .runs import load_run as _load
    return _load(path)
