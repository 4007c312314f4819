"""The validation process a command starts: same report as a scan here, no secret in it, gone with its parent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftprep.children import HELPER_NICE, preexec, ranked_within_group, ranks_within_group
from tasks import scan_child
from tasks.validate import validate_files
from tests.test_kill_matrix import FTPREP
from tests.test_validate import example, good_lines, write


@pytest.fixture
def scanner():
    child = scan_child.start("o200k_base")
    yield child
    scan_child.stop()


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state == "Z":  # ended, not yet reaped by its (already gone) parent's init
            return True
        time.sleep(0.05)
    return False


def _priority(pid: int) -> tuple[int, str | None, int, int]:
    """(a process's nice value, its autogroup (None without autogroup scheduling; "" the default one, of processes
    with no ``setsid`` above them), its session, its process group)."""
    group = Path(f"/proc/{pid}/autogroup")
    return (os.getpriority(os.PRIO_PROCESS, pid), (group.read_text().split() or [""])[0] if group.exists() else None,
            os.getsid(pid), os.getpgid(pid))


def _pair(tmp_path: Path, n: int) -> list[tuple[Path, str]]:
    """A training file over several parts (so the child's workers scan it), with problems of every kind the
    merge handles: a duplicate, a leaked example and prompt, a bad line, a blank line inside."""
    train = good_lines(n)
    train[10] = train[5]  # duplicate
    train[20] = "{not json"
    train[30] = ""
    leaked = json.dumps(example("item 7"))
    prompt_only = json.dumps(example("item 8", answer="Price is $99.00"))
    validation = [*good_lines(12, "held out"), leaked, prompt_only]
    return [(write(tmp_path, "train.jsonl", train), "train"), (write(tmp_path, "val.jsonl", validation), "validation")]


def test_the_child_scans_as_this_process_does(tmp_path, scanner):
    files = _pair(tmp_path, 50_000)  # 7 MB: two parts, scanned by the child's two forked workers
    assert files[0][0].stat().st_size > 4 << 20
    by_child = validate_files(files, workers=2)
    assert scanner.alive() and scan_child.current(files) is scanner
    by_child_exact = validate_files(files, workers=2, exact_tokens=True)
    scan_child.stop()
    assert scan_child.current() is None
    here = validate_files(files, workers=2)
    assert by_child == here
    assert validate_files(files, workers=2, exact_tokens=True) == by_child_exact
    found = {f.code for f in here.findings}
    assert {"duplicate_example", "invalid_json", "blank_line", "leakage_exact", "leakage_prompt"} <= found
    assert here.token_counts_estimated is None  # the child found the encoding too (TIKTOKEN_CACHE_DIR passed)


def test_a_child_that_went_away_is_replaced_by_a_scan_here(tmp_path, scanner):
    files = _pair(tmp_path, 200)
    expected = validate_files(files)
    os.kill(scanner.pid, signal.SIGKILL)
    assert _gone(scanner.pid)
    assert validate_files(files) == expected
    assert scan_child.current() is None


def test_an_object_store_file_is_scanned_here(scanner):
    assert scan_child.current([("s3://bucket/train.jsonl", "train")]) is None
    assert scan_child.current([("/tmp/train.jsonl", "train")]) is scanner


def test_the_command_starts_it_without_secrets_and_it_ends_with_the_command(tmp_path, cli_env, sample_pickle):
    """``ftprep prepare``, held at its validate step: its validation process runs, with the tokenizer's settings
    but none of the command's credentials; SIGKILL of the command ends it (and nothing else is left)."""
    marker = tmp_path / "paused"
    env = dict(cli_env, OPENAI_API_KEY="sk-proj-" + "s3cr3t" * 8, AWS_SECRET_ACCESS_KEY="aws-s3cr3t-value",
               FTPREP_TEST_PAUSE="validate", FTPREP_TEST_PAUSE_FILE=str(marker))
    proc = subprocess.Popen([FTPREP, "prepare", "--data", str(sample_pickle), "--out", str(tmp_path / "out"),
                             "--no-upload", "--train-size", "40", "--validation-size", "10"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "never reached the validate step"
            time.sleep(0.05)
        kids = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        scanners = [p for p in kids if b"tasks.scan_child" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(scanners) == 1, [Path(f"/proc/{p}/cmdline").read_bytes() for p in kids]
        environ = Path(f"/proc/{scanners[0]}/environ").read_bytes()
        assert b"s3cr3t" not in environ and b"OPENAI_API_KEY" not in environ
        assert b"TIKTOKEN_CACHE_DIR=" + os.environ["TIKTOKEN_CACHE_DIR"].encode() in environ
        # both helpers (this one and the chart process) yield a core to the command, which keeps its own priority:
        # in its session (so its autogroup), in process groups of their own
        painters = [p for p in kids if b"chart_draw.py" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(painters) == 1
        nice, group, session, _ = command = _priority(proc.pid)
        lowered = min(19, nice + HELPER_NICE) if ranked_within_group() else nice
        for pid in (scanners[0], painters[0]):
            assert _priority(pid) == (lowered, group, session, pid), pid
        assert command[:3] == _priority(os.getpid())[:3]
    finally:
        proc.kill()
        proc.wait()
    assert _gone(scanners[0]), "the validation process outlived the command"


def test_the_command_validates_in_it(tmp_path, cli_env):
    """``ftprep validate`` hands its files to the process it started: the report is the same as a scan here."""
    files = _pair(tmp_path, 300)
    args = ["validate", "--train", str(files[0][0]), "--validation", str(files[1][0]), "--json"]
    shown = subprocess.run([FTPREP, *args], env=cli_env, capture_output=True, text=True)
    assert shown.returncode == 1, shown.stderr  # the pair has errors
    assert json.loads(shown.stdout) == json.loads(validate_files(files).model_dump_json())


def test_its_errors_are_raised_here(tmp_path, scanner):
    """An expected error is the same one line; a bug comes with the child's traceback as a note."""
    from ftprep.errors import InputError

    with pytest.raises(InputError, match=r"missing\.jsonl cannot be read .*; check the file"):
        scanner.scan([(str(tmp_path / "missing.jsonl"), "train")], "o200k_base", 65536, 1, False, False)
    files = [(str(path), role) for path, role in _pair(tmp_path, 200)]
    with pytest.raises(TypeError) as bug:
        scanner.scan(files, "o200k_base", "not a number", 1, False, False)
    assert "In the validation process" in "".join(bug.value.__notes__)
    assert scanner.alive()  # and it goes on serving
    scans, _ = scanner.scan(files, "o200k_base", 65536, 1, False, False)
    assert scans[0].examples == 198  # of 200 lines: one not JSON, one blank


def test_ctrl_c_during_a_scan_stops_the_child_as_a_scan_here_would_stop(tmp_path, capfd):
    """Ctrl-C reaches the command's process group, not the child's: the command passes it on, so the
    child unwinds its scan (its progress bar cleared, the cursor shown again, its workers stopped) and leaves
    with 130 and no traceback, instead of being killed with its bar left on the terminal."""
    import threading

    files = _pair(tmp_path, 180_000)  # 26 MB: several parts, scanned by the child's forked workers
    # Ctrl-C raises KeyboardInterrupt here, as in a terminal: a shell's background job (`make test &` in a script)
    # inherits SIGINT ignored, and Python then leaves it ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    scanner = scan_child.start("o200k_base")
    try:
        child = scanner._child
        scanner.reason("o200k_base")  # loaded: the next wait is the scan's
        workers: list[int] = []

        def interrupt_when_scanning() -> None:
            deadline = time.monotonic() + 30
            while not workers and time.monotonic() < deadline:
                workers.extend(int(p) for p in
                               Path(f"/proc/{child.pid}/task/{child.pid}/children").read_text().split())
                time.sleep(0.005)
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

        threading.Thread(target=interrupt_when_scanning, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):  # every token counted: seconds of scan for the Ctrl-C to land in,
            validate_files(files, workers=2, exact_tokens=True)  # also on a loaded machine
        assert workers, "the child never forked its workers"
        assert child.wait(5) == 130  # it left by itself, interrupted, not killed
        assert all(_gone(pid, 5) for pid in workers)
        assert scan_child.current() is None
        assert "Traceback" not in capfd.readouterr().err
    finally:
        scan_child.stop()
        signal.signal(signal.SIGINT, previous)


def test_a_child_whose_command_stopped_listening_leaves_quietly(tmp_path, capfd):
    """Where no parent-death signal ends it (macOS) the child finishes the scan its command asked for; if the
    command has closed its end meanwhile (gone, or given up on it), the child leaves without a traceback."""
    files = [(str(path), role) for path, role in _pair(tmp_path, 20_000)]
    scanner = scan_child.start("o200k_base")
    try:
        child = scanner._child
        scanner.reason("o200k_base")
        scan_child._send(child.stdin, ("scan", files, "o200k_base", 65536, 1, False, False))
        child.stdout.close()  # nobody reads the answer
        assert child.wait(30) == 0
        assert "Traceback" not in capfd.readouterr().err
    finally:
        scan_child.stop()


def test_a_child_environment_holds_no_password(monkeypatch):
    from ftprep import children

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://me:pa55word@proxy.example:3128")
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "admin:pass")
    monkeypatch.setenv("PREFECT_HOME", "/tmp/prefect-home")
    env = children.environment("HTTPS_PROXY", "HTTP_PROXY", prefixes=("PREFECT_",))
    assert env["HTTPS_PROXY"] == "http://proxy.example:3128" and env["PREFECT_HOME"] == "/tmp/prefect-home"
    assert "HTTP_PROXY" not in env and "PREFECT_API_AUTH_STRING" not in env
    assert not any("pa55word" in v or "admin:pass" in v for v in env.values())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_a_child_whose_parent_is_already_gone_ends_at_once():
    """The parent-death signal only comes if the parent is alive when it is set: a worker forked just before its
    parent ended (Ctrl-C while the pool starts) would otherwise wait for ever on the pool's queue."""
    code = "import os, sys\nfrom ftprep.children import die_with_parent\ndie_with_parent(int(sys.argv[1]))\nprint('on')"
    assert subprocess.run([sys.executable, "-c", code, str(os.getpid())], capture_output=True,
                          text=True).stdout == "on\n"  # its parent is this process: it goes on
    assert subprocess.run([sys.executable, "-c", code, "1"], capture_output=True,
                          text=True).returncode == 1  # not the parent it was forked by: ends


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="helpers are lowered on Linux only")
def test_a_helper_yields_to_its_command_in_the_command_s_session():
    """A helper runs at a lower priority in the session (the autogroup) of the process that started it, in a process
    group of its own; it ignores SIGTTOU (its progress bar is not stopped under ``stty tostop``). In a session of its
    own its nice value would rank it only there: Linux shares the CPU between sessions first."""
    code = "import os, signal\nprint(os.nice(0), os.getsid(0), os.getpgid(0), os.getpid(), " \
           "signal.getsignal(signal.SIGTTOU) == signal.SIG_IGN)"
    mine = _priority(os.getpid())
    helper = subprocess.run([sys.executable, "-c", code], preexec_fn=preexec(helper=True), process_group=0,
                            capture_output=True, text=True, check=True).stdout.split()
    lowered = min(19, mine[0] + HELPER_NICE) if ranked_within_group() else mine[0]
    assert helper == [str(lowered), str(mine[2]), helper[3], helper[3], "True"]
    plain = subprocess.run([sys.executable, "-c", code], preexec_fn=preexec(), start_new_session=True,
                           capture_output=True, text=True, check=True).stdout.split()
    # the Prefect server, say: not a helper, not lowered, SIGTTOU as this process has it (a job may inherit it ignored)
    assert plain[0] == str(mine[0]) and plain[4] == str(signal.getsignal(signal.SIGTTOU) == signal.SIG_IGN)
    assert _priority(os.getpid()) == mine


def test_helpers_are_lowered_only_where_that_ranks_them_within_the_command_s_group(tmp_path):
    """Autogroup scheduling, or a cpu cgroup of its own: a helper's nice value ranks it against the command's
    session or cgroup only. Neither (a flat root cgroup without autogroup): it would rank it against every busy
    process on the machine, so it is not lowered."""
    on, off, cgroup, session = tmp_path / "on", tmp_path / "off", tmp_path / "cgroup", tmp_path / "session"
    on.write_text("1\n")
    off.write_text("0\n")

    def ranks(autogroup: Path, *lines: str, own: str = "/autogroup-17 nice 0") -> bool:
        cgroup.write_text("".join(f"{line}\n" for line in lines))
        session.write_text(f"{own}\n" if own else "")
        return ranks_within_group(autogroup, cgroup, session)

    assert ranks(on, "0::/")  # autogroup on, the root cgroup: ranked within the session
    # the default autogroup (nothing above the process called setsid, as in some sandboxes): shared with the machine
    assert not ranks(on, "0::/", own="")
    assert ranks(on, "0::/ci.slice/job.scope", own="")  # ... unless a cpu cgroup of its own holds it
    assert ranks(off, "0::/system.slice/worker.service")  # cgroup v2, a unit of its own
    assert ranks(off, "4:memory:/", "1:cpu,cpuacct:/docker/0123abc", "0::/")  # cgroup v1 cpu controller
    assert not ranks(off, "4:memory:/docker/0123abc", "1:cpu,cpuacct:/", "0::/")  # only memory is limited
    assert not ranks(off, "0::/")
    absent = tmp_path / "absent"
    assert not ranks_within_group(absent, absent, absent)  # not Linux, or no /proc
