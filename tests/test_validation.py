from __future__ import annotations

import io
from dataclasses import replace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.face_shards import valid_rows
from realness_tasks.settings import CropSettings
from realness_tasks.shards import SHARD_SCHEMA, FaceRow, rows_to_table
from realness_tasks.validation import StagedShard, ValidationReport, validate_shards


def _staged(table: pa.Table, video_id: str = "v1") -> StagedShard:
    sink = io.BytesIO()
    pq.write_table(table, sink)  # whatever its schema, as a drifted writer would
    return StagedShard(video_id, lambda: sink.getvalue())


def _rows(video_id: str, size: int = 64) -> list[FaceRow]:
    return [replace(row, video_id=video_id) for row in valid_rows(size)]


def _nullable_table(rows: list[FaceRow]) -> pa.Table:
    """The rows under a schema that allows nulls everywhere, as a careless writer might produce."""
    nullable = pa.schema([f.with_nullable(True) for f in SHARD_SCHEMA])
    return pa.Table.from_pylist([row.__dict__ for row in rows], schema=nullable)


CROP = CropSettings(size=64)


def _validate(table: pa.Table, crop: CropSettings = CROP, video_id: str = "v1") -> ValidationReport:
    [report] = validate_shards([_staged(table, video_id)], crop)
    return report


def test_a_good_shard_passes():
    report = _validate(rows_to_table(valid_rows(64)))
    assert report.success, report.failures
    assert report.rows == 4


def test_each_broken_rule_is_reported_with_the_values_that_broke_it():
    rows = valid_rows(64)
    rows[0] = replace(rows[0], confidence=1.2)
    rows[1] = replace(rows[1], box_x=600)               # box runs past the frame's right edge
    rows[2] = replace(rows[2], crop_jpeg=b"not a jpeg", source_uri=None)
    rows[3] = replace(rows[3], frame_index=rows[0].frame_index, label="MAYBE")  # duplicate key, bad label
    report = _validate(_nullable_table(rows))
    assert not report.success
    text = report.reason()
    for needle in ("confidence", "1 row, e.g. [1.2", "'box_right': 700", "crop_decoded_width", "source_uri",
                   "compound_columns_to_be_unique", "2 rows", "['MAYBE']"):
        assert needle in text, f"{needle} missing from {text}"
    failed = {f["type"] for f in report.details["failed_expectations"]}
    assert "expect_column_values_to_not_be_null" in failed and report.details["evaluated_expectations"] > len(failed)


def test_crop_of_the_wrong_size_fails():
    report = _validate(rows_to_table(valid_rows(64)), CropSettings(size=224))
    assert not report.success and "crop_width" in report.reason()


def test_crop_cut_with_another_margin_than_configured_fails():
    report = _validate(rows_to_table(valid_rows(64)), CropSettings(size=64, margin=0.6))
    assert not report.success and "crop_margin" in report.reason() and "[0.3" in report.reason()


def test_schema_drift_is_caught_before_row_checks():
    table = rows_to_table(valid_rows(64))
    drifted = table.set_column(table.schema.get_field_index("confidence"), "confidence",
                               table.column("confidence").cast(pa.float64()))
    report = _validate(drifted.drop_columns(["run_id"]))
    assert not report.success
    assert any("confidence is double" in f for f in report.failures)
    assert any("missing column run_id" in f for f in report.failures)


def test_two_videos_in_one_shard_fail():
    rows = valid_rows(64)
    rows[1] = replace(rows[1], video_id="v2")
    report = _validate(rows_to_table(rows))
    assert report.failures == ["expect_column_pair_values_to_be_equal(column_A=video_id, column_B=staged_video_id): "
                               "1 row, e.g. [{'video_id': 'v2', 'staged_video_id': 'v1'}]"]


def test_a_shard_holding_another_video_than_it_was_staged_for_fails():
    assert "staged_video_id" in _validate(rows_to_table(valid_rows(64)), video_id="v9").reason()


def test_empty_and_unreadable_shards_are_reported_on_their_own():
    empty = _validate(rows_to_table([]))
    assert (empty.success, empty.rows, empty.failures) == (False, 0, ["rows: the shard has no rows"])
    [unreadable] = validate_shards([StagedShard("v1", lambda: b"not parquet")], CROP)
    assert not unreadable.success and unreadable.failures[0].startswith("unreadable: ")


def test_a_bad_shard_among_good_ones_fails_alone_with_its_own_reasons():
    broken = _rows("v2")
    broken[0] = replace(broken[0], confidence=1.7)
    broken[2] = replace(broken[2], frame_index=broken[1].frame_index)
    shards = [_staged(rows_to_table(_rows("v1")), "v1"), _staged(rows_to_table(broken), "v2"),
              StagedShard("v3", lambda: b"junk"), _staged(rows_to_table(_rows("v4")), "v5"),
              _staged(rows_to_table(_rows("v6")), "v6")]
    together = validate_shards(shards, CROP)
    assert [r.success for r in together] == [True, False, False, False, True]
    assert [len(r.failures) for r in together] == [0, 2, 1, 1, 0]
    assert "1.7" in together[1].failures[0] and "v4" in together[3].reason() and "v5" in together[3].reason()
    assert together == [report for shard in shards for report in validate_shards([shard], CROP)]


def test_the_same_frame_in_two_shards_is_no_duplicate():
    shards = [_staged(rows_to_table(_rows(video_id)), video_id) for video_id in ("v1", "v2")]
    assert all(report.success for report in validate_shards(shards, CROP))


def test_an_unreachable_store_fails_the_run_instead_of_failing_the_shard():
    def unreachable() -> bytes:
        raise ConnectionError("store down")

    with pytest.raises(ConnectionError, match="store down"):
        validate_shards([_staged(rows_to_table(valid_rows(64))), StagedShard("v2", unreachable)], CROP)


def test_checks_built_once_per_process_carry_nothing_from_one_run_to_the_next():
    broken = valid_rows(64)
    broken[0] = replace(broken[0], confidence=1.2)
    assert not _validate(rows_to_table(broken)).success
    report = _validate(rows_to_table(valid_rows(64)))
    assert report.success and report.rows == 4, report.failures
    assert not _validate(rows_to_table(broken)).success
