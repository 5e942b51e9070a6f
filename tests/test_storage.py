from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from realness_tasks.storage import LocalStore, open_store, safe_key


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return open_store((tmp_path / "store").as_uri())
    return open_store(request.getfixturevalue("s3_bucket_uri"), request.getfixturevalue("s3_settings"))


def test_round_trip_list_copy_move_delete(store, tmp_path):
    store.put_bytes("landing/a b/ü.mp4", b"one")
    store.put_bytes("landing/x.bin", b"two")
    store.put_bytes("other/y.bin", b"three")
    assert sorted(o.key for o in store.list("landing/")) == ["landing/a b/ü.mp4", "landing/x.bin"]
    assert store.get_bytes("landing/a b/ü.mp4") == b"one"
    assert {o.key: o.size for o in store.list("landing/")}["landing/x.bin"] == 3
    store.copy("landing/x.bin", "copies/x.bin")
    store.move("other/y.bin", "moved/y.bin")
    assert store.exists("copies/x.bin") and store.exists("moved/y.bin") and not store.exists("other/y.bin")
    store.download("moved/y.bin", tmp_path / "y")
    assert (tmp_path / "y").read_bytes() == b"three"
    store.upload(tmp_path / "y", "up/y")
    assert store.get_bytes("up/y") == b"three"
    store.delete("up/y")
    assert not store.exists("up/y")
    with pytest.raises(KeyError):
        store.get_bytes("missing")
    assert store.key_for(store.uri_for("landing/x.bin")) == "landing/x.bin"


def test_etag_changes_when_content_changes(store):
    store.put_bytes("k", b"first")
    before = next(iter(store.list("k"))).etag
    store.put_bytes("k", b"second version")
    assert next(iter(store.list("k"))).etag != before


def test_pyarrow_reads_shards_in_place(store):
    sink = io.BytesIO()
    pq.write_table(pa.table({"a": [1, 2, 3]}), sink)
    store.put_bytes("faces/date=2026-11-26/v.parquet", sink.getvalue())
    fs, base = store.pyarrow_filesystem()
    table = pq.read_table(f"{base}/faces/date=2026-11-26/v.parquet", filesystem=fs)
    assert table.column("a").to_pylist() == [1, 2, 3]


@pytest.mark.parametrize("key", ["../x", "a/../../x", "/etc/passwd", "a/./b", "a\x00b"])
def test_keys_that_escape_the_root_are_refused(key):
    with pytest.raises(ValueError, match="unsafe"):
        safe_key(key)


def test_local_writes_leave_no_partial_file(tmp_path, monkeypatch):
    store = LocalStore(tmp_path / "s")
    store.put_bytes("shard.parquet", b"complete")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", broken_replace)
    with pytest.raises(OSError):
        store.put_bytes("shard.parquet", b"half")
    assert store.get_bytes("shard.parquet") == b"complete"
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["shard.parquet"]  # no temporary file left behind


def test_unknown_schemes_are_refused():
    with pytest.raises(ValueError, match="unsupported"):
        open_store("gs://bucket/x")
