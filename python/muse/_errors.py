"""Exceptions raised by the muse package.

Every failure of libmuse comes back as a status code plus a message
(muse_last_error); `raise_for_status` turns that pair into a Python exception
whose type says whose fault it is: a bad spec or argument is a ValueError, a
failing compiler, driver or cache is a RuntimeError. Both carry the library's
message unchanged, which already names the field, the bad value and what is
allowed.
"""

# Status codes of include/muse/muse.h (muse_status_t).
OK = 0
INVALID_SPEC = 1
INVALID_ARGUMENT = 2
COMPILE = 3
NO_DEVICE = 4
CUDA = 5
CACHE = 6
INTERNAL = 7

STATUS_NAMES = {
    OK: "ok",
    INVALID_SPEC: "invalid spec",
    INVALID_ARGUMENT: "invalid argument",
    COMPILE: "compile error",
    NO_DEVICE: "no device",
    CUDA: "CUDA error",
    CACHE: "cache error",
    INTERNAL: "internal error",
}


class MuseError(RuntimeError):
    """A libmuse call failed; `status` is the muse_status_t code."""

    def __init__(self, message, status=INTERNAL):
        super().__init__(message)
        self.status = status


class MuseSpecError(MuseError, ValueError):
    """The spec (or a keyword override of it) does not parse or validate."""


class MuseArgumentError(MuseError, ValueError):
    """Shapes, strides or pointers that libmuse rejected."""


class MuseLibraryNotFound(MuseError):
    """libmuse.so could not be found or loaded (the message lists every place
    that was tried and how to point MUSE_LIBRARY at it)."""


def error_for_status(status, message):
    """The exception for a non-zero muse_status_t and its message."""
    if status == INVALID_SPEC:
        return MuseSpecError(message, status)
    if status == INVALID_ARGUMENT:
        return MuseArgumentError(message, status)
    name = STATUS_NAMES.get(status, "status %d" % status)
    return MuseError("%s: %s" % (name, message) if message else name, status)
