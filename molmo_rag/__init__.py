"""molmo-rag: make images, slide decks and videos searchable in RAG pipelines with Molmo2."""

from .errors import (
    BackendError,
    ConfigurationError,
    InputError,
    MissingDependencyError,
    MolmoRagError,
    UnsupportedTaskError,
)
from .points import Point, parse_count, parse_points
from .tasks import Ask, Caption, Count, Scene, VideoTask

__version__ = "0.1.0"

__all__ = [
    "Ask",
    "BackendError",
    "Caption",
    "ConfigurationError",
    "Count",
    "InputError",
    "MissingDependencyError",
    "MolmoRagError",
    "Point",
    "Scene",
    "UnsupportedTaskError",
    "VideoTask",
    "parse_count",
    "parse_points",
]
