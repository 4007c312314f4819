"""Expected errors: each carries one line that names the input and says what to do.

Anything raised as an :class:`FtprepError` is shown to the user as ``error: <message>`` with no
traceback and a non-zero exit. Anything else is a bug and keeps its traceback.
"""


class FtprepError(Exception):
    """An expected failure caused by input, configuration or the remote service."""

    exit_code = 2

    def __init__(self, message: str):
        # One line, always: a multi-line message would be cut in logs and UIs.
        super().__init__(" ".join(str(message).split()))


class InputError(FtprepError):
    """A dataset, path or parameter given by the user cannot be used."""


class UnsafePickleError(InputError):
    """A pickle asked to call or import something; it was refused before anything ran."""


class TemplateError(FtprepError):
    """A template is invalid or names fields the dataset does not have."""


class RemoteError(FtprepError):
    """The OpenAI API (or a compatible server) refused or failed a request."""
