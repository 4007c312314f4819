"""Upload benchmark: a file of several hundred MB through the Uploads API, and the uploader's peak memory.

    .venv/bin/python bench/upload_bench.py                       # ~400 MB file, 64 MiB threshold and parts
    .venv/bin/python bench/upload_bench.py --mb 100 --no-compare # quicker

Makes a course-shaped JSONL file of ``--mb`` MB in bench/out/upload/ (kept for the next run), starts the stub
server in its own process (``python -m tests.openai_stub --port 0``) so that its buffers are not counted, and
runs each uploader in a fresh process against it. For each it prints the wall time of the upload and the
process's peak RSS while uploading (VmHWM from /proc/self/status, reset after the imports through
/proc/self/clear_refs, so it is the peak of the upload itself) next to its RSS before uploading.

Uploaders: ``ftprep`` (tasks.upload.upload_and_wait: sha256 check, md5, parts streamed from disk, complete,
settle, wait for processing), ``ftprep again`` (the same content once more: found and reused), and with
``--compare`` (default) two ways the SDK offers: ``files.create(file=Path)`` (the SDK reads the whole file into
memory) and ``uploads.upload_file_chunked`` (reads each 64 MiB part into memory).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "upload"
MIB = 1024 * 1024

CHILD = r"""
import hashlib, json, os, sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from ftprep.client import make_client
from ftprep.remote import RemotePolicy as UploadPolicy
from pydantic import SecretStr

from ftprep.settings import Settings
from tasks.upload import upload_and_wait

def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / 1e6  # kB -> MB
path, sha, mode = Path({path!r}), {sha!r}, {mode!r}
client = make_client(Settings(api_key=SecretStr({key!r}), base_url={url!r}))
client.files.list()  # connection, lazy imports
policy = UploadPolicy(part_threshold={threshold}, part_size={part})
before = status("VmRSS")
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS: the peak printed is the upload's
    reset = True
except OSError:
    reset = False
t0 = time.perf_counter()
if mode == "ftprep":
    file, reused = upload_and_wait(client, path, sha, policy=policy)
elif mode == "sdk-files-create":
    file, reused = client.files.create(file=path, purpose="fine-tune"), False
else:
    upload = client.uploads.upload_file_chunked(file=path, mime_type="application/jsonl", purpose="fine-tune")
    file, reused = upload.file, False
seconds = time.perf_counter() - t0
print(json.dumps({{"seconds": seconds, "rss_before_mb": before, "peak_mb": status("VmHWM"), "hwm_reset": reset,
                  "file": file.id, "bytes": file.bytes, "status": file.status, "reused": reused}}))
"""


def make_file(path: Path, mb: int) -> str:
    """A JSONL file of about ``mb`` MB of course-shaped examples, written in 1 MiB batches; returns its sha256."""
    import hashlib

    target = mb * 1000 * 1000
    if not (path.is_file() and abs(path.stat().st_size - target) < 1000):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            written, i = 0, 0
            while written < target:
                batch = []
                for _ in range(2000):
                    i += 1
                    line = json.dumps({"messages": [
                        {"role": "system", "content": "You estimate prices of items. Reply only with the price, "
                                                      "no explanation"},
                        {"role": "user", "content": f"How much does this cost?\n\nItem {i}: a sturdy widget, "
                                                    f"model W-{i % 9973}, with {i % 17} accessories"},
                        {"role": "assistant", "content": f"Price is ${(i * 7919) % 100000 / 100:.2f}"},
                    ]}).encode() + b"\n"
                    batch.append(line)
                data = b"".join(batch)[: target - written]
                fh.write(data)
                written += len(data)
        tmp.replace(path)
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(MIB):
            sha.update(chunk)
    return sha.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=400, help="file size in MB (default 400)")
    ap.add_argument("--threshold-mb", type=int, default=64, help="Uploads API above this many MiB (default 64)")
    ap.add_argument("--part-mb", type=int, default=64, help="part size in MiB (default 64, the API's maximum)")
    ap.add_argument("--compare", action=argparse.BooleanOptionalAction, default=True,
                    help="also time the SDK's own ways (default: yes)")
    args = ap.parse_args()

    path = OUT / "fine_tune_train.jsonl"
    t0 = time.perf_counter()
    sha = make_file(path, args.mb)
    size = path.stat().st_size
    how = (f"{-(-size // (args.part_mb * MIB))} parts of {args.part_mb} MiB" if size > args.threshold_mb * MIB
           else "below it: files.create")
    print(f"file: {path.relative_to(ROOT)}, {size:,} bytes ({size / MIB:.0f} MiB), made/hashed in "
          f"{time.perf_counter() - t0:.1f} s; threshold {args.threshold_mb} MiB, {how}; "
          f"python {sys.version.split()[0]}, {os.cpu_count()} cores", flush=True)

    stub = subprocess.Popen([sys.executable, "-m", "tests.openai_stub", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        url = stub.stdout.readline().strip()
        runs = [("ftprep", "ftprep"), ("ftprep again", "ftprep")]
        if args.compare:
            runs += [("sdk files.create(Path)", "sdk-files-create"), ("sdk upload_file_chunked", "sdk-chunked")]
        for label, mode in runs:
            code = CHILD.format(root=str(ROOT), path=str(path), sha=sha, mode=mode, key="sk-test-stub-key", url=url,
                                threshold=args.threshold_mb * MIB, part=args.part_mb * MIB)
            w0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
            wall = time.perf_counter() - w0
            if proc.returncode != 0:
                print(f"{label:24} failed:\n{proc.stderr[-3000:]}")
                return 1
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            note = "reused" if r["reused"] else f"uploaded as {r['file']}"
            print(f"{label:24} upload {r['seconds']:6.2f} s  RSS before {r['rss_before_mb']:6.0f} MB  "
                  f"peak while uploading {r['peak_mb']:6.0f} MB (+{r['peak_mb'] - r['rss_before_mb']:.0f} MB)  "
                  f"{note}, {r['bytes']:,} bytes, {r['status']}; process wall {wall:.1f} s"
                  + ("" if r["hwm_reset"] else "  [VmHWM not reset: peak includes start-up]"), flush=True)
    finally:
        stub.terminate()
        stub.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
