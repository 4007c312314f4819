"""Team setup: put the sample dataset into object storage, where the runs of every worker read it by URL, and save
the shared result storage on the Prefect server.

    python scripts/team_setup.py --bucket ftprep-team [--data data/sample/items.pkl]

Creates the bucket when it is missing and uploads the dataset to ``s3://BUCKET/sample/items.pkl``, the
``data`` of the deployments in prefect.team.yaml (``--bucket`` defaults to ``$FTPREP_BUCKET``). With
``FTPREP_RESULT_STORAGE`` set (``s3://BUCKET/results``), it also creates that URL's bucket when missing and saves
the Prefect block the flows keep their results and cache records in (ftprep/results.py) on the server at
``PREFECT_API_URL``, so that a worker's first run finds it. S3 settings
come from the standard AWS variables and config files: ``AWS_ENDPOINT_URL`` for an S3-compatible store
(MinIO, moto, ...), ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` or a profile, ``AWS_DEFAULT_REGION``.
Needs s3fs (``pip install s3fs``; in the dev extra).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

KEY = "sample/items.pkl"


def upload_sample(data: Path, bucket: str) -> str:
    """Upload ``data`` to ``s3://bucket/sample/items.pkl`` (creating the bucket if needed); return the URL."""
    import fsspec

    fs = fsspec.filesystem("s3")
    if not fs.exists(bucket):
        fs.mkdir(bucket)
    url = f"s3://{bucket}/{KEY}"
    fs.put_file(str(data), url)
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bucket", default=os.environ.get("FTPREP_BUCKET"),
                        help="bucket for the team's data (default: $FTPREP_BUCKET)")
    parser.add_argument("--data", type=Path, default=Path("data/sample/items.pkl"),
                        help="the dataset to upload (default: the sample `make sample` writes)")
    args = parser.parse_args(argv)
    if not args.bucket:
        parser.error("no bucket: pass --bucket NAME or set FTPREP_BUCKET")
    if not args.data.is_file():
        parser.error(f"{args.data} does not exist (make it with `make sample`)")
    try:
        import s3fs  # noqa: F401
    except ImportError:
        print("error: s3fs is not installed: pip install s3fs", file=sys.stderr)
        return 2
    url = upload_sample(args.data, args.bucket)
    digest = hashlib.sha256(args.data.read_bytes()).hexdigest()
    print(f"uploaded {args.data} ({args.data.stat().st_size:,} bytes, sha256 {digest[:16]}…) to {url}")
    return save_result_storage()


def save_result_storage() -> int:
    """FTPREP_RESULT_STORAGE, when set: its bucket (s3://), and its block on the Prefect server."""
    from ftprep.errors import FtprepError
    from ftprep.settings import load_settings

    try:
        results = load_settings().result_storage
        if not results:
            return 0
        if not os.environ.get("PREFECT_API_URL"):
            print("error: FTPREP_RESULT_STORAGE is set but PREFECT_API_URL is not: set it to the team's Prefect server "
                  "(the block is saved there)", file=sys.stderr)
            return 2
        if results.startswith("s3://"):
            import fsspec

            fs, bucket = fsspec.filesystem("s3"), results.removeprefix("s3://").split("/", 1)[0]
            if not fs.exists(bucket):
                fs.mkdir(bucket)
        from ftprep import results as shared

        slug = shared.ensure(results)
    except FtprepError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(f"results and cache records of every run go to {results} (Prefect block {slug})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
