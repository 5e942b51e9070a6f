"""The real-data benchmark's manifest (bench/realdata/manifest.csv) and the script that rebuilds the local copy.

The videos are never committed; the manifest says where each comes from (repository, commit, path),
what it must hash to, its label and the evidence for it. These tests read the committed manifest
and rebuild files from a real (bare) git repository made here.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "bench" / "realdata" / "manifest.csv"
COLUMNS = ["dataset", "label", "manipulation", "identity", "source_id", "repo", "commit", "path", "sha256", "bytes",
           "evidence", "local_path"]


def rebuild_module():
    spec = importlib.util.spec_from_file_location("rebuild", ROOT / "bench" / "realdata" / "rebuild.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_row_names_its_source_hash_label_and_evidence():
    with open(MANIFEST, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == COLUMNS
    assert len(rows) >= 60 and len({r["dataset"] for r in rows}) >= 3
    for row in rows:
        assert row["label"] in ("REAL", "FAKE") and row["evidence"].strip(), row
        assert (row["manipulation"] == "none") == (row["label"] == "REAL"), row
        assert re.fullmatch(r"[0-9a-f]{64}", row["sha256"]) and re.fullmatch(r"[0-9a-f]{40}", row["commit"]), row
        assert re.fullmatch(r"[\w.-]+/[\w.-]+", row["repo"]) and int(row["bytes"]) > 0 and row["source_id"], row
        assert not row["local_path"].startswith("/") and ".." not in Path(row["local_path"]).parts, row
    assert len({r["sha256"] for r in rows}) == len(rows), "a clip listed twice"
    assert len({r["local_path"] for r in rows}) == len(rows)
    labels = Counter((r["dataset"], r["label"]) for r in rows)
    assert labels["faceforensics", "REAL"] and labels["faceforensics", "FAKE"]
    assert labels["celebdf", "REAL"] and labels["celebdf", "FAKE"]


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_rebuild_takes_files_from_a_mirror_checks_their_hash_and_skips_what_is_there(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", cwd=work)
    (work / "clips").mkdir()
    (work / "clips" / "a.mp4").write_bytes(b"real clip bytes")
    git("add", ".", cwd=work)
    git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "clips", cwd=work)
    commit = git("rev-parse", "HEAD", cwd=work)
    mirrors = tmp_path / "mirrors"
    git("clone", "-q", "--bare", str(work), str(mirrors / "owner+clips" / "repo"), cwd=tmp_path)
    good = hashlib.sha256(b"real clip bytes").hexdigest()
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        base = {"dataset": "d", "label": "REAL", "manipulation": "none", "identity": "i", "source_id": "s",
                "repo": "owner/clips", "commit": commit, "path": "clips/a.mp4", "bytes": "15", "evidence": "e"}
        writer.writerow({**base, "sha256": good, "local_path": "d/REAL/a.mp4"})
        writer.writerow({**base, "sha256": "0" * 64, "local_path": "d/REAL/wrong.mp4"})
        writer.writerow({**base, "sha256": good, "path": "clips/gone.mp4", "local_path": "d/REAL/gone.mp4"})
    rebuild = rebuild_module()
    dest = tmp_path / "dest"

    first = rebuild.rebuild(manifest, dest, mirrors, allow_download=False, timeout=1, verbose=False)

    assert (first["from_mirror"], first["bad_sha"], first["missing"]) == (1, 1, 1)
    assert (dest / "d" / "REAL" / "a.mp4").read_bytes() == b"real clip bytes"
    assert not (dest / "d" / "REAL" / "wrong.mp4").exists()
    again = rebuild.rebuild(manifest, dest, mirrors, allow_download=False, timeout=1, verbose=False)
    assert again["present"] == 1 and again["from_mirror"] == 0


@pytest.mark.parametrize("unsafe", ["/etc/passwd", "../outside.mp4"])
def test_rebuild_refuses_a_local_path_outside_its_folder(tmp_path, unsafe):
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerow({c: "x" for c in COLUMNS} | {"sha256": "0" * 64, "local_path": unsafe})
    counts = rebuild_module().rebuild(manifest, tmp_path / "dest", None, allow_download=False, timeout=1, verbose=False)
    assert counts["missing"] == 1 and not (tmp_path / "outside.mp4").exists()
