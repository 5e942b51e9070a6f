from __future__ import annotations

from dataclasses import replace

import pyarrow as pa

from realness_tasks.shards import rows_to_table
from realness_tasks.validation import validate_shard
from tests.factories import valid_rows


def test_a_good_shard_passes():
    report = validate_shard(rows_to_table(valid_rows(64)), 64)
    assert report.success, report.failures
    assert report.rows == 4


def test_each_broken_rule_is_reported():
    rows = valid_rows(64)
    rows[0] = replace(rows[0], confidence=1.2)
    rows[1] = replace(rows[1], box_x=600)               # box runs past the frame's right edge
    rows[2] = replace(rows[2], crop_jpeg=b"not a jpeg")
    rows[3] = replace(rows[3], frame_index=rows[0].frame_index, label="MAYBE")  # duplicate key, bad label
    report = validate_shard(rows_to_table(rows), 64)
    assert not report.success
    text = report.reason()
    for needle in ("confidence", "box_right", "crop_decoded_width", "compound_columns_to_be_unique", "label"):
        assert needle in text, f"{needle} missing from {text}"


def test_crop_of_the_wrong_size_fails():
    report = validate_shard(rows_to_table(valid_rows(64)), 224)
    assert not report.success and "crop_width" in report.reason()


def test_schema_drift_is_caught_before_row_checks():
    table = rows_to_table(valid_rows(64))
    drifted = table.set_column(table.schema.get_field_index("confidence"), "confidence",
                               table.column("confidence").cast(pa.float64()))
    report = validate_shard(drifted.drop_columns(["run_id"]), 64)
    assert not report.success
    assert any("confidence is double" in f for f in report.failures)
    assert any("missing column run_id" in f for f in report.failures)


def test_two_videos_in_one_shard_fail():
    rows = valid_rows(64)
    rows[1] = replace(rows[1], video_id="v2")
    assert "video_id" in validate_shard(rows_to_table(rows), 64).reason()


def test_checks_built_once_per_process_carry_nothing_from_one_shard_to_the_next():
    broken = valid_rows(64)
    broken[0] = replace(broken[0], confidence=1.2)
    assert not validate_shard(rows_to_table(broken), 64).success
    report = validate_shard(rows_to_table(valid_rows(64)), 64)
    assert report.success and report.rows == 4, report.failures
    assert not validate_shard(rows_to_table(broken), 64).success
