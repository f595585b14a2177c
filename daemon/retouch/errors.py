"""The errors Retouch raises, each with a stable wire `code` (stdlib only: vendored into the editor plugins).

An error that crosses the wire travels as `{"code": ..., "message": ...}`; `error_from_wire` turns it back into
the matching class on the client side, so callers can catch exactly what they care about.
"""

from __future__ import annotations


def shown(value: object, limit: int = 60) -> str:
    """repr() of a client-supplied value, cut short: error messages must stay small whatever was sent."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


class RetouchError(Exception):
    """Base class. `code` is what travels over the wire."""

    code = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_wire(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class BadRequest(RetouchError):
    """The request is malformed: missing field, wrong frame size, bad dtype, bad parameter value."""

    code = "bad_request"


class UnknownTask(BadRequest):
    code = "unknown_task"


class UnknownModel(BadRequest):
    code = "unknown_model"


class UnsupportedModel(RetouchError):
    """A model file that neither spandrel nor onnxruntime can load, or that does not fit the task."""

    code = "unsupported_model"


class ImageError(RetouchError):
    """An input image that is missing, unreadable or of a kind we do not handle; or an output we cannot write."""

    code = "bad_image"


class ProtocolMismatch(RetouchError):
    code = "protocol_mismatch"


class AuthError(RetouchError):
    code = "bad_signature"


class Replayed(AuthError):
    code = "replayed"


class InsecureRuntimeDir(RetouchError):
    """The folder that holds the connection file (and its key) is not private to this user."""

    code = "insecure_runtime_dir"


class Cancelled(RetouchError):
    code = "cancelled"


class DaemonUnavailable(RetouchError):
    """No daemon answers, and none could be started."""

    code = "unavailable"


class DaemonTimeout(RetouchError):
    code = "timeout"


_BY_CODE: dict[str, type[RetouchError]] = {
    cls.code: cls
    for cls in (
        RetouchError,
        BadRequest,
        UnknownTask,
        UnknownModel,
        UnsupportedModel,
        ImageError,
        ProtocolMismatch,
        AuthError,
        Replayed,
        InsecureRuntimeDir,
        Cancelled,
        DaemonUnavailable,
        DaemonTimeout,
    )
}


def error_from_wire(payload: dict) -> RetouchError:
    """Rebuild the error a daemon sent; unknown codes become a plain RetouchError that keeps the code."""
    code = str(payload.get("code", "internal"))
    message = str(payload.get("message", "unknown error"))
    cls = _BY_CODE.get(code, RetouchError)
    err = cls(message)
    err.code = code
    return err
