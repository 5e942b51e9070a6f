from __future__ import annotations

from pathlib import Path

import pytest

from realness_tasks.config import RealnessConfig, settings_table


def test_environment_variables_reach_every_section():
    cfg = RealnessConfig.from_env({
        "REALNESS_STORE_URI": "s3://archive/realness",
        "REALNESS_S3_ENDPOINT_URL": "http://minio:9000",
        "REALNESS_SAMPLING_FRAMES_PER_VIDEO": "32",
        "REALNESS_CROP_MARGIN": "0.25",
        "REALNESS_TRAINING_SELF_BLENDED_FAKES": "always",
        "REALNESS_AZURE_ENDPOINT": "",
    })
    assert cfg.resolved_store_uri == "s3://archive/realness"
    assert cfg.s3.endpoint_url == "http://minio:9000"
    assert cfg.sampling.frames_per_video == 32
    assert cfg.crop.margin == 0.25
    assert cfg.training.self_blended_fakes == "always"
    assert cfg.azure.endpoint is None and not cfg.azure.enabled


def test_overrides_win_over_the_environment_and_none_means_keep():
    cfg = RealnessConfig.from_env({"REALNESS_S3_REGION": "eu-west-1"},
                                  s3={"region": None, "access_key_id": "AKIA"}, database_url="postgresql://x/y")
    assert cfg.s3.region == "eu-west-1" and cfg.s3.access_key_id == "AKIA"
    assert cfg.resolved_database_url == "postgresql://x/y"


def test_defaults_live_under_home(tmp_path):
    cfg = RealnessConfig.from_env({"REALNESS_HOME": str(tmp_path)})
    assert cfg.resolved_store_uri == (tmp_path / "store").as_uri()
    assert cfg.resolved_database_url == f"sqlite:///{tmp_path / 'realness.db'}"


def test_bad_values_name_the_variable():
    with pytest.raises(ValueError, match="REALNESS_SAMPLING_MAX_FRAMES"):
        RealnessConfig.from_env({"REALNESS_SAMPLING_MAX_FRAMES": "many"})
    with pytest.raises(ValueError, match="REALNESS_TRAINING_SELF_BLENDED_FAKES"):
        RealnessConfig.from_env({"REALNESS_TRAINING_SELF_BLENDED_FAKES": "perhaps"})
    with pytest.raises(ValueError, match="REALNESS_TRAINING_BACKBONE='resnet50': choose one of efficientnet_lite0, "):
        RealnessConfig.from_env({"REALNESS_TRAINING_BACKBONE": "resnet50"})


def test_secrets_are_masked():
    cfg = RealnessConfig.from_env({"REALNESS_AZURE_KEY": "hunter2", "REALNESS_AZURE_ENDPOINT": "https://x"})
    assert cfg.azure.enabled
    assert "hunter2" not in str(cfg.redacted())


def test_documented_table_is_current():
    doc = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    assert settings_table() in doc, "docs/configuration.md is stale: regenerate with python -m realness_tasks.config"
