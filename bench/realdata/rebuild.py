#!/usr/bin/env python3
"""Rebuild the local copy of the real-deepfake benchmark from its manifest.

Every row of ``manifest.csv`` (and, with ``--faces``, ``faces_manifest.csv``)
names a file by public GitHub repository, commit and path, plus its sha256.
For each row this script:

1. skips the file if ``DEST/<local_path>`` already exists with the right sha256;
2. otherwise reads it from a local bare mirror when ``--mirrors`` is given
   (``git --git-dir=<mirror> show <commit>:<path>``), where the mirror of
   ``owner/name`` is found as ``<mirrors>/owner+name/repo[/.git]``,
   ``<mirrors>/owner+name[.git]`` or ``<mirrors>/owner/name[.git]``;
3. else (or if the mirror lacks the object) downloads
   ``https://raw.githubusercontent.com/{repo}/{commit}/{path}``;
4. verifies the sha256 and writes the file atomically.

It reports counts and exits non-zero if any file is missing or has the wrong
hash.  Standard library only; the files are research data under their
datasets' own terms (see README.md) and are never committed to git.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import os
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def find_mirror(mirrors: Path, repo: str) -> Path | None:
    owner, _, name = repo.partition("/")
    flat = f"{owner}+{name}"
    candidates = [
        mirrors / flat / "repo" / ".git",
        mirrors / flat / "repo",
        mirrors / flat,
        mirrors / (flat + ".git"),
        mirrors / owner / name,
        mirrors / owner / (name + ".git"),
    ]
    for c in candidates:
        if (c / "HEAD").is_file() and (c / "objects").is_dir():
            return c
    return None


def from_mirror(gitdir: Path, commit: str, path: str) -> bytes | None:
    try:
        r = subprocess.run(
            ["git", f"--git-dir={gitdir}", "show", f"{commit}:{path}"],
            capture_output=True, check=False, timeout=300,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout if r.returncode == 0 else None


def from_raw(repo: str, commit: str, path: str, timeout: float) -> bytes | None:
    url = RAW_URL.format(repo=repo, commit=commit, path=urllib.parse.quote(path))
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read()
    except Exception:  # network errors, 404s: reported as missing
        return None


def write_atomic(dest: Path, data: bytes) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def rebuild(manifest: Path, dest: Path, mirrors: Path | None, allow_download: bool,
            timeout: float, verbose: bool) -> dict:
    counts = {"rows": 0, "present": 0, "from_mirror": 0, "downloaded": 0,
              "missing": 0, "bad_sha": 0}
    mirror_cache: dict[str, Path | None] = {}
    with open(manifest, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        counts["rows"] += 1
        repo, commit, path = row["repo"], row["commit"], row["path"]
        want = row["sha256"]
        rel = row["local_path"]
        if os.path.isabs(rel) or ".." in Path(rel).parts:
            print(f"REFUSED unsafe local_path {rel!r}", file=sys.stderr)
            counts["missing"] += 1
            continue
        target = dest / rel
        if target.is_file() and sha256_file(target) == want:
            counts["present"] += 1
            continue
        data, how = None, None
        if mirrors is not None:
            if repo not in mirror_cache:
                mirror_cache[repo] = find_mirror(mirrors, repo)
            gd = mirror_cache[repo]
            if gd is not None:
                data = from_mirror(gd, commit, path)
                how = "from_mirror" if data is not None else None
        if data is None and allow_download:
            data = from_raw(repo, commit, path, timeout)
            how = "downloaded" if data is not None else None
        if data is None:
            counts["missing"] += 1
            print(f"MISSING {repo}@{commit[:10]}:{path}", file=sys.stderr)
            continue
        got = sha256_bytes(data)
        if got != want:
            counts["bad_sha"] += 1
            print(f"BAD-SHA {repo}@{commit[:10]}:{path} want {want} got {got}", file=sys.stderr)
            continue
        write_atomic(target, data)
        counts[how] += 1
        if verbose:
            print(f"{how}: {rel}")
    return counts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", type=Path, default=HERE / "manifest.csv",
                    help="manifest CSV (default: %(default)s)")
    ap.add_argument("--faces", action="store_true",
                    help="also rebuild the rows of faces_manifest.csv")
    ap.add_argument("--dest", type=Path, default=REPO_ROOT / ".realness-realdata",
                    help="local root the files go under (default: %(default)s)")
    ap.add_argument("--mirrors", type=Path, default=None,
                    help="folder of bare git mirrors (e.g. /work/.mirror) to read from first")
    ap.add_argument("--no-download", action="store_true",
                    help="never fall back to raw.githubusercontent.com")
    ap.add_argument("--timeout", type=float, default=60.0, help="per-download timeout, s")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)

    manifests = [args.manifest]
    if args.faces:
        manifests.append(args.manifest.parent / "faces_manifest.csv")
    failed = False
    for m in manifests:
        if not m.is_file():
            print(f"no manifest at {m}", file=sys.stderr)
            failed = True
            continue
        c = rebuild(m, args.dest, args.mirrors, not args.no_download, args.timeout, args.verbose)
        print(f"{m.name}: {c['rows']} rows; {c['present']} already present, "
              f"{c['from_mirror']} from mirrors, {c['downloaded']} downloaded, "
              f"{c['missing']} missing, {c['bad_sha']} wrong sha256 -> {args.dest}")
        failed |= bool(c["missing"] or c["bad_sha"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
