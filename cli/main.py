"""The ``ftprep`` command: its options are derived from the flows' typed parameters, so a default lives once.

Commands are loaded lazily (``ftprep validate`` never imports the flows). Expected errors (:class:`FtprepError`,
bad options) print one line, ``error: ...``, and exit non-zero with no traceback; anything else (a bug) prints its
traceback, redacted, and exits 1; see :func:`main`.
"""

from __future__ import annotations

import inspect
import logging
import os
import signal
import sys
import threading
import traceback
import typing
from collections.abc import Callable, Sequence
from typing import Annotated, Any

from cyclopts import App, CycloptsError, Parameter
from cyclopts.exceptions import UnusedCliTokensError
from pydantic import ValidationError

from cli import emit, interrupted, stdout_gone
from ftprep import __version__
from ftprep.children import interrupt_again_if_unsafe, resend_lost_interrupts, track_forks
from ftprep.errors import FtprepError

app = App(
    name="ftprep",
    help="Turn a dataset into validated OpenAI fine-tuning files, upload them, fine-tune and evaluate, as Prefect "
         "flows. Settings (OPENAI_API_KEY, OPENAI_BASE_URL, FTPREP_*) come from the environment or .env.",
    version=__version__,
    exit_on_error=False,
    print_error=False,
    help_on_error=False,
    suppress_keyboard_interrupt=False,  # a Ctrl-C is main's to report (one line), not a silent exit 130
    default_parameter=Parameter(negative_iterable=()),  # no --empty-X flags: a list option left out is empty
)
COMMANDS = (
    ("prepare", "Write fine-tuning JSONL files from a dataset, validate them and upload them."),
    ("validate", "Check JSONL fine-tuning files before upload; exit 0 valid, 1 not valid."),
    ("fine-tune", "Start (once) and follow a fine-tuning job on the latest prepared files."),
    ("evaluate", "Measure a model's price estimates on test items."),
    ("serve", "Serve the deployments of prefect.yaml (no work pool or worker needed)."),
    ("notify", "Post to a webhook when a prepare or fine-tune run fails or crashes (creates or updates the "
               "automation)."),
)
for _name, _help in COMMANDS:
    _module = {"prepare": "prepare", "fine-tune": "finetune", "evaluate": "finetune"}.get(_name, "commands")
    app.command(f"cli.{_module}:{_name.replace('-', '_')}", name=_name, help=_help)


FLOW_COMMANDS = {"prepare", "fine-tune", "evaluate"}
SCAN_COMMANDS = {"prepare", "validate"}  # started with a validation process (tasks/scan_child.py)
UNWIND_SECONDS = 4.5  # after Ctrl-C, the longest the command unwinds (a fine-tune run cancels its job meanwhile)
EARLY_CHARTS_MAX_BYTES = 64 << 20  # larger datasets: the chart process starts beside their read (see _start_early)


def options_of(flow_fn: Callable[..., Any], flatten: Sequence[str] = (),
               rename: dict[str, str] | None = None) -> inspect.Signature:
    """The flow function's signature as keyword-only CLI options.

    Parameters named in ``flatten`` (pydantic models) become their fields' options (``split.train_size`` is
    ``--train-size``); ``rename`` gives a parameter another flag. Types, defaults, constraints and help come from
    the flow and its models, so the CLI, the UI's run form and the flow cannot drift.
    """
    hints = typing.get_type_hints(flow_fn, include_extras=True)
    params = []
    for p in inspect.signature(flow_fn).parameters.values():
        annotation = hints.get(p.name, p.annotation)
        if p.name in flatten:
            annotation = Annotated[annotation, Parameter(name="*")]
        elif rename and p.name in rename:
            annotation = Annotated[annotation, Parameter(name=rename[p.name])]
        params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=annotation))
    return inspect.Signature(params)


def command(flow_fn: Callable[..., Any], run: Callable[..., int], flatten: Sequence[str] = (),
            rename: dict[str, str] | None = None) -> Callable[..., int]:
    """A CLI command with the flow's options, plus ``--json``, that calls ``run(as_json, **options)``."""

    def cmd(**options: Any) -> int:
        from ftprep import heartbeat, records

        if _console:  # the console script: the process leaves when this returns
            records.hold_until_exit()
        with heartbeat.ours():  # the run's heartbeats end with it, not up to 1 s later (ftprep/heartbeat.py)
            return run(options.pop("as_json", False), **options)

    signature = options_of(flow_fn, flatten, rename)
    as_json = inspect.Parameter("as_json", inspect.Parameter.KEYWORD_ONLY, default=False,
                                annotation=Annotated[bool, Parameter(name="--json", negative="",
                                                                     help="Print the persisted result as JSON.")])
    cmd.__signature__ = signature.replace(parameters=[*signature.parameters.values(), as_json])  # type: ignore
    cmd.__doc__ = flow_fn.__doc__
    cmd.__name__ = flow_fn.__name__
    return cmd


def before_flow() -> None:
    """What every flow command does just before its flow runs: the settings, checked (a bad ``FTPREP_*`` value
    is the command's one-line error, before a flow run exists; the flow checks them again for runs started
    elsewhere), ftprep's log filters (the command prints an expected error itself, once), the temporary Prefect
    server started by :func:`main`, now answering, and the shared result storage block (FTPREP_RESULT_STORAGE)
    saved on the server the flow will load it from."""
    from ftprep import logs, results, server
    from ftprep.settings import load_settings

    settings = load_settings()
    logs.install()
    logs.quiet_expected_on_console()
    server.ready()
    results.ensure(settings.result_storage)


def print_json(result: Any) -> int:
    """``--json``: the persisted result, redacted (:func:`cli.emit`), as one JSON document on stdout."""
    emit(result.model_dump_json(indent=2))
    return 0


def _option(loc: tuple) -> str:
    """The option of a pydantic error's location: its last field name (a union's branch, such as
    ``constrained-int``, is not one)."""
    names = [str(part) for part in loc if str(part).isidentifier()]
    return "--" + names[-1].replace("_", "-") if names else "an option"


def _refusal(errors: list[dict[str, Any]]) -> str:
    """What the first refused value should have been; for a union (``--epochs``: a number or ``auto``), each way."""
    first = errors[0]
    where = _option(first["loc"])
    ways = [e["msg"] for e in errors if _option(e["loc"]) == where]
    return ", or ".join([ways[0], *(w[0].lower() + w[1:] for w in ways[1:])])


def _exit_now(code: int, line: str | None) -> None:
    """Leave at once, without waiting for threads stuck in requests (their sockets close with the process)."""
    if line:
        print(line, file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


_command: str | None = None  # the command being run (its Ctrl-C line names what it may leave behind)
_interrupted = False  # Ctrl-C was pressed: whatever error it surfaces as (a library may wrap it) means "interrupted"


def _on_interrupt(signum, frame) -> None:
    """First Ctrl-C: stop within seconds with one line; a second Ctrl-C adds nothing."""
    global _interrupted
    if not _interrupted:  # the user's Ctrl-C, not one sent again (interrupt_again_if_unsafe, resend_lost_interrupts)
        _interrupted = True
        logging.disable(logging.CRITICAL)  # Prefect's crash report would print tracebacks; the run is marked anyway
        # however long the unwinding (a thread in a request) or the wait for a safe moment below takes
        timer = threading.Timer(UNWIND_SECONDS, _exit_now, (130, interrupted(_command)))
        timer.daemon = True
        timer.start()
    if interrupt_again_if_unsafe(frame):  # a helper being started, a C extension starting: see there
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _interrupted_while_leaving(signum, frame) -> None:
    """Ctrl-C once the command is done and its exit handlers run (Prefect's logs sent, the temporary server
    stopped): leave now, with the one line. Raised there, each handler would drop it in turn."""
    _exit_now(130, interrupted(_command))


def _know_secrets() -> None:
    """Register the settings' secrets for redaction, when a bug came before a flow command loaded them."""
    from ftprep.settings import load_settings

    try:
        load_settings()
    except Exception:  # noqa: BLE001 - bad settings: the generic redaction (key shapes, URL userinfo) still applies
        pass


def _start_early(argv: list[str]) -> None:
    """The console command's helpers, started before its code is imported so that they work on the other core
    meanwhile: the validation process loads the tokenizer (``prepare``, ``validate``), the datasets are hashed and
    the chart process imports matplotlib (``prepare``). Only for the console script: its process runs one command
    and then leaves (:func:`run`); a process calling :func:`main` keeps running scans and charts itself.

    Not the chart process when the datasets are large (:data:`EARLY_CHARTS_MAX_BYTES`): until the flow starts, both
    cores are busy (the command's imports, the hashing, the tokenizer), while a large dataset is then read on one
    core with the other idle. The flow starts the chart process just before that read (400,000 items: 0.2-0.3 s
    sooner to the end, measured alternately; the everyday job's 600 items gain nothing from waiting)."""
    if not argv or {"-h", "--help"} & set(argv):
        return
    if argv[0] in SCAN_COMMANDS:
        from ftprep.openai_models import DEFAULT_MODEL, model_spec
        from tasks import scan_child

        scan_child.start(model_spec(DEFAULT_MODEL).encoding)
    if argv[0] == "prepare":
        from tasks.chart_draw import Painter

        if _hash_early(argv) <= EARLY_CHARTS_MAX_BYTES:
            Painter.shared()


def _hash_early(argv: list[str]) -> int:
    """Start hashing the local datasets given as ``--data``/``--validation-data`` (the load task's cache key)
    before Prefect is imported: hashing releases the GIL, so it runs beside that import. Anything unusual is
    left to the command's own checks, which hash again (a file being hashed is waited for, not read twice).
    Returns the bytes of the files it hashes."""
    from ftprep import storage
    from ftprep.fsio import hash_ahead

    total, seen = 0, set()
    for i, arg in enumerate(argv):
        for option in ("--data", "--validation-data"):
            value = argv[i + 1] if arg == option and i + 1 < len(argv) else \
                arg.split("=", 1)[1] if arg.startswith(option + "=") else None
            if value is None or storage.is_url(value):
                continue
            try:
                path = storage.normalize(value, option)
            except FtprepError:
                continue
            if path in seen or not os.path.isfile(path):  # never a FIFO: reading one would block
                continue
            seen.add(path)  # one file given to both options is read once (the run's store keeps it by content)
            try:
                total += os.path.getsize(path)
            except OSError:  # gone meanwhile: the command's own checks say so
                continue
            hash_ahead(path)
    return total


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; return its exit code (0 ok, 1 validation failed or a bug, 2 expected error, 130 interrupted)."""
    from ftprep.redact import redact

    global _command
    argv = list(sys.argv[1:] if argv is None else argv)
    _command = argv[0] if argv else None
    try:
        if argv and argv[0] in FLOW_COMMANDS and not {"-h", "--help"} & set(argv):
            from ftprep import server

            server.start()  # boots while the flows are imported and the inputs checked
        code = app(argv)
    except FtprepError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # stdout's reader has gone outside emit() (a help text, say): the output ends there
        stdout_gone()
        return 0
    except Exception as e:  # noqa: BLE001 - sorted below: interrupted, a bad option, or a bug
        if _interrupted:  # e.g. pydantic wraps a KeyboardInterrupt raised inside its serializer
            print(interrupted(_command), file=sys.stderr)
            return 130
        if not isinstance(e, (ValidationError, CycloptsError)):
            _know_secrets()  # a bug: its traceback, as Python would print it, through the redaction layer
            print(redact(traceback.format_exc()).rstrip(), file=sys.stderr)
            return 1
        cause = e if isinstance(e, ValidationError) else e.__cause__
        if isinstance(cause, FtprepError):  # a model's own check, already one line
            print(f"error: {cause}", file=sys.stderr)
            return cause.exit_code
        if isinstance(cause, ValidationError):  # an option outside its range, caught by the typed models
            errors = cause.errors()
            first = errors[0]
            command_name = argv[0] if argv else "COMMAND"
            argument = getattr(e, "argument", None)  # the option cyclopts was converting, as the user typed it
            name = getattr(argument, "name", "")
            option = name if name.startswith("--") else _option(first["loc"])  # "*": a field of a flattened model
            print(redact(f"error: {option}: {_refusal(errors)} (got {first.get('input')!r}); see "
                         f"ftprep {command_name} --help"), file=sys.stderr)
            return 2
        text = " ".join(str(e).split()).rstrip(".")
        if isinstance(e, UnusedCliTokensError):  # cyclopts says "Unused Tokens: ['maybe']"
            extra = " ".join(map(str, e.unused_tokens))
            text = (f"unexpected argument {extra!r} (an on/off option such as --shuffle takes no value: "
                    "--no-shuffle turns it off)")
        where = f"ftprep {argv[0]} --help" if argv and argv[0] in dict(COMMANDS) else "ftprep --help"
        print(redact(f"error: {text}; see {where}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted(_command), file=sys.stderr)
        return 130
    return code if isinstance(code, int) else 0


_leaving: list[int] = []  # the exit code, once the command has finished
_console = False  # run() (the console script) is running this process's one command


def _leave_without_teardown() -> None:
    """The last exit handler (registered first, so run last): every other one has run (Prefect's logs and
    events sent, the temporary server stopped) and every thread has been joined; the process leaves with the
    command's exit code without freeing its heap object by object, which for 400,000 loaded items took 0.3-0.6 s."""
    if _leaving:
        logging.shutdown()  # registered before this one, so it would run after: flush the log handlers now
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(_leaving[0])


def _exit_message(message: object) -> int:
    """``sys.exit("text")``, as Python ends it (the text on stderr, exit status 1), through the redaction layer."""
    from ftprep.redact import redact

    print(redact(str(message)), file=sys.stderr)
    return 1


def run() -> None:
    """The ``ftprep`` command (:mod:`cli.console` calls it): :func:`main` with Ctrl-C handled as a terminal user
    expects."""
    import atexit

    global _command, _console
    _console = True
    _command = sys.argv[1] if len(sys.argv) > 1 else None
    atexit.register(_leave_without_teardown)  # before Prefect registers its own: it runs after them
    track_forks()  # after logging's at-fork hooks (imported above), before the helpers' forks
    signal.signal(signal.SIGINT, _on_interrupt)
    resend_lost_interrupts(_on_interrupt)
    try:
        try:
            _start_early(sys.argv[1:])
            code = main()
        except SystemExit as e:  # cyclopts ends a command that returned its exit code with sys.exit(code)
            code = e.code if isinstance(e.code, int) else 0 if e.code is None else _exit_message(e.code)
        except KeyboardInterrupt:  # while the helpers start, before main() (they end with this process)
            print(interrupted(_command), file=sys.stderr)
            code = 130
        sys.stdout.flush()
    except BrokenPipeError:  # `ftprep ... | head`: the reader has what it wanted
        stdout_gone()
        code = 0
    if code == 130:
        _exit_now(code, None)  # do not wait for threads still inside a request
    _leaving.append(code)
    signal.signal(signal.SIGINT, _interrupted_while_leaving)
    sys.exit(code)


if __name__ == "__main__":
    run()
