"""Expected errors, all of them: each carries one redacted line that names the input and says what to do.

Anything raised as an :class:`FtprepError` is shown to the user as ``error: <message>`` with no traceback and
its ``exit_code``; anything else is a bug and keeps its traceback (redacted: :class:`RedactedError`).
"""


class FtprepError(Exception):
    """An expected failure caused by input, configuration or the remote service."""

    exit_code = 2

    def __init__(self, message: str):
        from ftprep.redact import redact

        # One line, always (a multi-line message would be cut in logs and UIs), and never a secret.
        super().__init__(redact(" ".join(str(message).split())))


class InputError(FtprepError):
    """A dataset, path, setting or parameter given by the user cannot be used."""


class UnsafePickleError(InputError):
    """A pickle asked to call or import something; it was refused before anything ran."""


class TemplateError(FtprepError):
    """A template is invalid or names fields the dataset does not have."""


class MissingKeyError(FtprepError):
    """No API key is configured."""


class RemoteError(FtprepError):
    """The OpenAI API (or a compatible server) refused or failed a request, for good."""


class ModelUnavailable(RemoteError):
    """The server refused the model itself (it does not exist, or the key may not use it): no call can succeed."""


class TransientRemoteError(RemoteError):
    """An attempt failed for a reason worth another attempt (the task's Prefect retries take it)."""

    def __init__(self, message: str, reason: str = "", retry_after: float | None = None):
        super().__init__(message)
        self.reason = reason or str(self)
        self.retry_after = retry_after


class ValidationFailed(FtprepError):
    """The written files have errors; nothing was uploaded."""

    exit_code = 1


class Interrupted(FtprepError):
    """The user pressed Ctrl-C; the message says what became of the work in flight (exit status 130)."""

    exit_code = 130


class RedactedError(Exception):
    """An unexpected exception (a bug) whose text held a secret, as it leaves a task or flow (ftprep.steps): the
    original's type name and redacted message, its traceback, and any exception it was raised from as a redacted
    note (:func:`ftprep.redact.redact_exception`). Not an :class:`FtprepError`: it keeps its traceback."""
