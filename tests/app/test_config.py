from __future__ import annotations

import pytest

from ophyd_stem.app.config import load_config


def test_arguments_win_over_environment_which_wins_over_the_file(tmp_path, monkeypatch):
    config_file = tmp_path / "config.toml"
    config_file.write_text(
        '[bridge]\naddress = "tcp://file:1"\n[catalog]\nuri = "http://file"\n'
        '[session]\noperator = "from file"\n'
    )
    monkeypatch.setenv("OPHYD_STEM_CONFIG", str(config_file))
    monkeypatch.setenv("OPHYD_STEM_CATALOG", "http://env")
    monkeypatch.delenv("OPHYD_STEM_BRIDGE", raising=False)
    monkeypatch.delenv("OPHYD_STEM_OPERATOR", raising=False)
    config = load_config(operator="from argument")
    assert config.bridge == "tcp://file:1"
    assert config.catalog == "http://env"
    assert config.operator == "from argument"
    assert config.sources == {
        "bridge": str(config_file),
        "catalog": "$OPHYD_STEM_CATALOG",
        "operator": "argument",
    }
    assert not config.uses_twin


def test_no_configuration_means_twin_and_embedded_catalog(tmp_path, monkeypatch):
    monkeypatch.setenv("OPHYD_STEM_CONFIG", str(tmp_path / "missing.toml"))
    for name in ("BRIDGE", "CATALOG", "SAMPLE"):
        monkeypatch.delenv(f"OPHYD_STEM_{name}", raising=False)
    config = load_config()
    assert config.uses_twin
    assert config.catalog is None
    assert config.sample == "graphene"


def test_broken_file_and_unknown_settings_are_reported(tmp_path, monkeypatch):
    bad = tmp_path / "bad.toml"
    bad.write_text("[bridge\naddress=")
    monkeypatch.setenv("OPHYD_STEM_CONFIG", str(bad))
    with pytest.raises(ValueError, match=r"bad\.toml is not valid TOML"):
        load_config()
    monkeypatch.setenv("OPHYD_STEM_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(TypeError, match="unknown session setting"):
        load_config(bridge_adress="tcp://x")


def test_device_and_cluster_come_from_the_compute_section(tmp_path, monkeypatch):
    config_file = tmp_path / "config.toml"
    config_file.write_text('[compute]\ndevice = "CUDA:1"\ncluster = "tcp://scheduler:8786"\n')
    monkeypatch.setenv("OPHYD_STEM_CONFIG", str(config_file))
    monkeypatch.delenv("OPHYD_STEM_DEVICE", raising=False)
    monkeypatch.delenv("OPHYD_STEM_COMPUTE", raising=False)
    config = load_config()
    assert (config.device, config.compute) == ("cuda:1", "tcp://scheduler:8786")
    monkeypatch.setenv("OPHYD_STEM_COMPUTE", "local:2")
    assert load_config(device="cpu").device == "cpu"
    assert load_config().compute == "local:2"


def test_a_bad_device_or_cluster_says_where_it_came_from(tmp_path, monkeypatch):
    config_file = tmp_path / "config.toml"
    config_file.write_text('[compute]\ndevice = "gpu"\n')
    monkeypatch.setenv("OPHYD_STEM_CONFIG", str(config_file))
    monkeypatch.delenv("OPHYD_STEM_DEVICE", raising=False)
    monkeypatch.delenv("OPHYD_STEM_COMPUTE", raising=False)
    with pytest.raises(ValueError, match=r"device from .*config\.toml: device must be one of"):
        load_config()
    with pytest.raises(ValueError, match="compute from argument"):
        load_config(device="cpu", compute="scheduler:8786")
