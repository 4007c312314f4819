"""Ctrl-C in a terminal: one line, out within seconds, even with a request in flight; a second Ctrl-C adds nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from cli.main import UNWIND_SECONDS

FTPREP = str(Path(sys.executable).parent / "ftprep")


def test_ctrl_c_during_a_slow_upload_stops_within_seconds_with_one_line(tmp_path, cli_env, sample_pickle,
                                                                        openai_stub):
    openai_stub.inject("POST", "/v1/files", "delay", seconds=120)  # the server hangs on the upload
    env = dict(cli_env, OPENAI_API_KEY=openai_stub.api_key, OPENAI_BASE_URL=openai_stub.base_url)
    proc = subprocess.Popen([FTPREP, "prepare", "--data", str(sample_pickle), "--out", "out", "--train-size", "25",
                             "--validation-size", "10"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not [r for r in openai_stub.requests if r.method == "POST" and r.path == "/v1/files"]:
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "the upload never started"
        time.sleep(0.05)
    time.sleep(0.5)
    interrupted = time.monotonic()
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)  # the impatient second Ctrl-C
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - interrupted
    assert proc.returncode == 130
    # a thread stuck in a request cannot be stopped: the command leaves by its watchdog (CI's load adds seconds)
    assert took < UNWIND_SECONDS + 3, f"took {took:.1f} s to stop"
    lines = [line for line in err.splitlines() if "interrupted" in line]
    assert len(lines) == 1 and lines[0].startswith("interrupted: stopped; requests in flight were cancelled")
    assert "Traceback" not in err + out
    assert not (tmp_path / "out" / "manifest.json").exists()  # nothing was committed


WRAPPED = """
import os, signal, sys
import pydantic
import cli.main as m

class Settings(pydantic.BaseModel):
    x: int = 1

    @pydantic.field_serializer("x")
    def ctrl_c_meanwhile(self, value):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C lands while pydantic serializes: it wraps the interrupt
        return value

signal.signal(signal.SIGINT, m._on_interrupt)
m.app = lambda argv: Settings().model_dump()  # the command's code, reduced to what Prefect's start-up does there
sys.exit(m.main(["prepare"]))
"""


def test_ctrl_c_that_a_library_wraps_in_its_own_error_is_still_one_line():
    """Seen at start-up: Ctrl-C inside Prefect's settings serialization came out as pydantic's
    PydanticSerializationError with a traceback and exit 1."""
    done = subprocess.run([sys.executable, "-c", WRAPPED], capture_output=True, text=True, timeout=60)
    assert done.returncode == 130, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("interrupted")


def test_ctrl_c_while_the_command_starts_is_one_line_too(tmp_path, cli_env, sample_pickle):
    """Ctrl-C at any moment of the start (imports, Prefect's settings, the flow run's creation), where libraries
    may wrap the KeyboardInterrupt in their own errors, or (cyclopts, by default) swallow it into a silent exit 130,
    and while the command's own code is imported and its helpers forked (cli/console.py, track_forks): exit 130,
    one line, no traceback."""
    for delay in (0.2, 0.3, 0.4, 0.8, 1.0, 1.2, 1.4, 1.7, 2.0):
        proc = subprocess.Popen([FTPREP, "prepare", "--data", str(sample_pickle), "--out", "out", "--no-upload"],
                                env=cli_env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        if proc.returncode == 0:  # the run was over before the Ctrl-C: nothing to see at this delay
            continue
        assert proc.returncode == 130, (delay, err[-2000:])
        assert "Traceback" not in err + out, (delay, err[-2000:])
        assert [line for line in err.splitlines() if line.strip()][-1].startswith("interrupted"), (delay, err)


def test_ctrl_c_in_a_fork_s_at_fork_hooks_is_not_lost():
    """A KeyboardInterrupt raised inside an at-fork hook (logging's, say, while a helper is started) is only printed
    ("Exception ignored in: ...") and lost: the handler sends the Ctrl-C again once the fork is over."""
    code = """import os, signal, subprocess, sys, time
from ftprep.children import interrupt_again_if_unsafe, track_forks

def handler(signum, frame):
    if interrupt_again_if_unsafe(frame):
        return
    raise KeyboardInterrupt

os.register_at_fork(after_in_parent=lambda: os.kill(os.getpid(), signal.SIGINT))  # Ctrl-C inside the hooks
track_forks()
signal.signal(signal.SIGINT, handler)
try:
    subprocess.run([sys.executable, "-c", "pass"], preexec_fn=lambda: None)  # as a helper starts: hooks run
    for _ in range(200):  # the Ctrl-C sent again comes within 10 ms
        time.sleep(0.01)
    print("lost")
except KeyboardInterrupt:
    print("interrupted")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "interrupted" and "Exception ignored" not in done.stderr, done.stderr


CTRL_C_IN_AN_EXTENSION_S_START = """import os, signal, sys, time
from ftprep.children import interrupt_again_if_unsafe

def handler(signum, frame):
    if {check} and interrupt_again_if_unsafe(frame):
        return
    raise KeyboardInterrupt

class CtrlCWhileOrjsonStarts:  # asked for every module imported: Ctrl-C at the first that orjson's start imports
    started = sent = False

    def find_spec(self, name, path=None, target=None):
        if name == "orjson.orjson":
            self.started = True
        elif self.started and not self.sent:
            self.sent = True
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, CtrlCWhileOrjsonStarts())
signal.signal(signal.SIGINT, handler)
try:
    import orjson
    for _ in range(200):  # the Ctrl-C sent again comes within 10 ms
        time.sleep(0.01)
    print("lost")
except KeyboardInterrupt:
    print("interrupted")
"""


def test_ctrl_c_while_a_c_extension_starts_waits_for_it_instead_of_crashing_it():
    """orjson's start (ftprep/tokens.py imports it while the command starts) assumes that its imports succeed: a
    KeyboardInterrupt raised inside one ends the process with SIGSEGV, no line said. The handler sends the Ctrl-C
    again once the extension has started. Without that check the same script crashes (asserted, so that the test
    keeps reproducing what it guards against)."""
    def run(check: bool) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", CTRL_C_IN_AN_EXTENSION_S_START.format(check=check)],
                              capture_output=True, text=True, timeout=60)

    done = run(True)
    assert done.returncode == 0 and done.stdout.strip() == "interrupted", (done.returncode, done.stderr[-2000:])
    assert run(False).returncode == -signal.SIGSEGV


def test_ctrl_c_that_python_could_only_print_and_drop_comes_again_unprinted():
    """A KeyboardInterrupt raised in a finalizer (or a callback of C code: pydantic's was seen) is printed by Python,
    with a traceback, and dropped ("Exception ignored in: ..."): the command went on until its watchdog. Now it is
    not printed and the Ctrl-C comes again, to the same handler, which had set later Ctrl-Cs aside."""
    code = """import os, signal, sys, time
from ftprep.children import resend_lost_interrupts

calls = []

def handler(signum, frame):
    calls.append(signum)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as the command's: a second Ctrl-C adds nothing
    raise KeyboardInterrupt

class Finalized:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C lands while a finalizer runs
        sum(range(1000))

signal.signal(signal.SIGINT, handler)
resend_lost_interrupts(handler)
try:
    Finalized()
    for _ in range(200):  # the Ctrl-C sent again comes within 10 ms
        time.sleep(0.01)
    print("lost")
except KeyboardInterrupt:
    print("interrupted", len(calls))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "interrupted 2", (done.stdout, done.stderr)
    assert done.stderr == ""
    without = subprocess.run([sys.executable, "-c", code.replace("resend_lost_interrupts(handler)", "")],
                             capture_output=True, text=True, timeout=60)
    assert without.stdout.strip() == "lost" and "Exception ignored in" in without.stderr  # what it guards against


RUN_WITH = """import atexit, os, signal, sys, time
import cli.main as m

class Finalized:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C lands while a finalizer runs
        sum(range(1000))

def app(argv):
{body}
    return 0

m.app = app  # the command's code, reduced to where the Ctrl-C lands
sys.argv = ["ftprep", "notify"]
m.run()
"""


def _run_with(body: str) -> tuple[subprocess.CompletedProcess, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", RUN_WITH.format(body=body)], capture_output=True, text=True,
                          timeout=60)
    return done, time.monotonic() - started


def _one_interrupted_line(done: subprocess.CompletedProcess) -> bool:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    return len(lines) == 1 and lines[0].startswith("interrupted")


def test_the_command_s_ctrl_c_lost_in_a_finalizer_still_stops_it_at_once_with_one_line():
    """The console command's wiring (cli.main.run): the Ctrl-C Python dropped comes again to the command's handler,
    so the command stops at once, not through its watchdog (UNWIND_SECONDS later), with its one line."""
    done, took = _run_with("    Finalized()\n    time.sleep(UNWIND + 3)".replace("UNWIND", str(UNWIND_SECONDS)))
    assert done.returncode == 130 and _one_interrupted_line(done), (done.returncode, done.stderr[-2000:])
    assert took < UNWIND_SECONDS, f"took {took:.1f} s: the watchdog, not the Ctrl-C, ended it"


def test_a_library_s_own_keyboard_interrupt_in_a_finalizer_is_not_taken_for_a_ctrl_c():
    """Only a KeyboardInterrupt the handler raised is sent again; another one, dropped by Python, is printed as
    before and the command goes on."""
    body = ("    class Raises:\n"
            "        def __del__(self):\n"
            "            raise KeyboardInterrupt('not from a signal')\n"
            "    Raises()\n"
            "    time.sleep(0.3)\n"
            "    print('went on')")
    done, _ = _run_with(body)
    assert done.returncode == 0 and done.stdout.strip() == "went on", (done.returncode, done.stderr[-2000:])
    assert "Exception ignored in" in done.stderr and "not from a signal" in done.stderr


def test_ctrl_c_while_the_command_leaves_ends_it_with_one_line():
    """A Ctrl-C once the command's work is done, while its exit handlers run (Prefect's logs sent, a temporary
    server stopped): exit 130 with the one line, at once; raised there, each exit handler would drop it in turn."""
    body = ("    def late():\n"
            "        os.kill(os.getpid(), signal.SIGINT)\n"
            "        time.sleep(3)\n"
            "        print('left late')\n"
            "    atexit.register(late)")
    done, took = _run_with(body)
    assert done.returncode == 130 and _one_interrupted_line(done), (done.returncode, done.stderr[-2000:])
    assert "left late" not in done.stdout and took < 2.5, took
