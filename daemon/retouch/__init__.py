"""Retouch: AI photo enhancement served by a local daemon to Krita, GIMP and the `retouch` CLI."""

from .errors import RetouchError
from .protocol import PROTOCOL_VERSION, ImageSpec

__version__ = "0.1.0"

__all__ = ["PROTOCOL_VERSION", "ImageSpec", "RetouchError", "__version__"]
