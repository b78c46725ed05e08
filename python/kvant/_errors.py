"""The exceptions kvant raises: one class per kvant::ErrorCode (kvant/status.h).

Every one is a KvantError (a RuntimeError) whose message is the one-line
message the kvant command prints, naming the file, input, node or option.
"""


class KvantError(RuntimeError):
    """A kvant call failed; str(error) says what is wrong."""


class InvalidArgumentError(KvantError, ValueError):
    """Bad input: a file, model, shape, dtype, data or option."""


class UnsupportedError(KvantError):
    """Valid ONNX that kvant does not implement (yet)."""


class NotFoundError(KvantError, LookupError):
    """A missing file, tensor, input, output or node."""


class CancelledError(KvantError):
    """A progress callable returned False: the call stopped, nothing was written."""
