"""Does an S3 server make conditional writes exclusive? Two threads race the same conditional PUT
(``If-Match`` on the ETag both read, then ``If-None-Match: *`` on a missing object) ``--trials`` times;
a trial with two successful writes means the server let both through. Writes
``$KD_LOCAL_DIR/bench/s3_cas.json`` (default ``var/bench``). Against moto's server by default (started
here on 127.0.0.1); ``--endpoint`` points it at another S3-compatible store (a test bucket)."""
from __future__ import annotations

import argparse
import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from kd_tasks.storage.fs import S3Store

BUCKET = "kd-test"


@contextlib.contextmanager
def moto_server(log: Path) -> Iterator[str]:
    """moto's S3 server on a free port of 127.0.0.1, with the bucket ``kd-test``; yields its endpoint."""
    import boto3

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=out, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if proc.poll() is not None:
                raise RuntimeError(f"the S3 server (moto) exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"the S3 server (moto) did not listen on {endpoint} within 30 s")
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="kd-test",
                     aws_secret_access_key="kd-test-secret").create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def race(store: "S3Store", trials: int, bucket: str = BUCKET) -> dict[str, int]:
    """Trials in which both of two simultaneous conditional writes succeeded, per kind."""
    from kd_tasks.storage.fs import PreconditionFailed

    key = f"{bucket}/cas-race-{uuid.uuid4().hex[:8]}.json"
    both = {"if_match": 0, "if_none_match": 0}
    for trial in range(trials):
        for kind in both:
            if kind == "if_match":
                expected = store.put_if(key, f"start {trial}".encode(), store.get(key)[1])
            else:
                store.client.delete_object(Bucket=bucket, Key=key.split("/", 1)[1])
                expected = None
            won: list[int] = []
            start = threading.Barrier(2)

            def put(writer: int) -> None:
                start.wait()
                try:
                    store.put_if(key, f"{trial} {kind} {writer}".encode(), expected)
                    won.append(writer)
                except PreconditionFailed:
                    pass

            threads = [threading.Thread(target=put, args=(w,)) for w in (1, 2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            both[kind] += len(won) > 1
    return both


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--endpoint", default=None, help="an S3-compatible endpoint (default: start moto here); "
                        "credentials from AWS's usual chain")
    parser.add_argument("--bucket", default=BUCKET)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    import os

    from kd_tasks.home import local_dir
    from kd_tasks.storage.fs import S3Store

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    with contextlib.ExitStack() as stack:
        if args.endpoint is None:
            log = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "moto.log"
            store = S3Store(endpoint_url=stack.enter_context(moto_server(log)), region="us-east-1",
                            access_key="kd-test", secret_key="kd-test-secret")
        else:
            store = S3Store(endpoint_url=args.endpoint, region=region)
        both = race(store, args.trials, args.bucket)
    from importlib.metadata import version

    report = {"server": "moto " + version("moto") if args.endpoint is None else args.endpoint,
              "trials": args.trials, "both_writes_succeeded": both,
              "exclusive": not any(both.values())}
    out = Path(args.out) if args.out else local_dir() / "bench" / "s3_cas.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
