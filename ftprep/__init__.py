"""ftprep's foundation: settings, the remote-call policy, models, names, errors and redaction (no Prefect flows)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ftprep")
except PackageNotFoundError:  # running from a checkout that was not installed
    __version__ = "0+unknown"
