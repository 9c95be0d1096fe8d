"""The CBMIR configuration section: defaults that work, errors that name the key path."""
from pathlib import Path

import pytest

from cbmir.service.config import DEFAULT_MODEL, ConfigError, load_config, parse_tag


def test_an_absent_section_gives_working_defaults_beside_orthancs_index():
    config = load_config({"IndexDirectory": "/data/orthanc"})
    assert config.model_path == DEFAULT_MODEL
    assert config.index_directory == Path("/data/orthanc/cbmir")
    assert config.modalities == ("MR",)
    assert config.label_tag == (0x0020, 0x4000)
    assert config.batch_size > 0 and config.rebuild_threshold > 0


def test_the_shipped_orthanc_json_section_is_valid():
    import json
    shipped = json.loads((Path(__file__).resolve().parents[2] / "orthanc.json").read_text())
    config = load_config(shipped)
    assert config.device == "auto" and config.modalities == ("MR",)


@pytest.mark.parametrize("key, value", [
    ("BatchSize", "8"), ("BatchSize", 0), ("Threads", -1), ("RebuildThreshold", True),
    ("AnnoyTrees", 0), ("AnnoySearchK", -2), ("MaxUploadBytes", 10), ("Device", "tpu"),
    ("Modalities", "MR"), ("Modalities", []), ("LabelTag", "zz,yy"), ("LabelTag", 42),
    ("ModelPath", ""), ("CatchUpSeconds", 0), ("IndexDelaySeconds", -1),
    ("IndexDelaySeconds", "1.2"), ("IndexDelaySeconds", True),
])
def test_a_bad_value_names_the_full_key_path(key, value):
    with pytest.raises(ConfigError, match=f"CBMIR.{key}"):
        load_config({"CBMIR": {key: value}})


def test_the_index_delay_defaults_to_1_2_seconds_and_may_be_zero():
    assert load_config({}).index_delay_seconds == 1.2
    assert load_config({"CBMIR": {"IndexDelaySeconds": 0}}).index_delay_seconds == 0.0
    assert load_config({"CBMIR": {"IndexDelaySeconds": 30}}).index_delay_seconds == 30.0


def test_an_unknown_key_is_reported_with_the_known_ones():
    with pytest.raises(ConfigError, match="CBMIR.BatchSise"):
        load_config({"CBMIR": {"BatchSise": 4}})


def test_a_non_object_section_is_refused():
    with pytest.raises(ConfigError, match="CBMIR must be a JSON object"):
        load_config({"CBMIR": [1]})


@pytest.mark.parametrize("text", ["0020,4000", "(0020,4000)", "00204000", "ImageComments"])
def test_label_tags_are_accepted_in_every_usual_spelling(text):
    assert parse_tag(text) == (0x0020, 0x4000)


def test_modalities_are_case_insensitive_and_star_accepts_all():
    assert load_config({"CBMIR": {"Modalities": ["mr", "CT"]}}).accepts_modality("ct")
    assert not load_config({}).accepts_modality("SR")
    assert load_config({"CBMIR": {"Modalities": ["*"]}}).accepts_modality("SR")


def test_the_store_defaults_to_sqlite_and_postgresql_reuses_orthancs_section():
    assert load_config({}).store == "sqlite" and load_config({}).postgresql is None
    pg = {"EnableIndex": True, "Host": "db", "Port": 5433, "Database": "orthanc",
          "Username": "u", "Password": "p", "Lock": False}
    config = load_config({"Name": "A", "HttpPort": 8043, "PostgreSQL": pg,
                          "CBMIR": {"Store": "postgresql"}})
    assert config.postgresql == {"Host": "db", "Port": 5433, "Database": "orthanc",
                                 "Username": "u", "Password": "p"}
    assert config.node_name.startswith("A@") and config.node_name.endswith(":8043")
    assert config.index_directory.parent == Path("OrthancStorage/cbmir")  # a folder per node
    assert ":" not in config.index_directory.name
    own = {"Host": "other", "Database": "cbmir"}
    config = load_config({"PostgreSQL": pg, "CBMIR": {"Store": "postgresql", "PostgreSQL": own,
                                                      "NodeName": "node-1", "ClaimSeconds": 5}})
    assert config.postgresql == own and config.node_name == "node-1"
    assert config.claim_seconds == 5.0


@pytest.mark.parametrize("cbmir, match", [
    ({"Store": "mysql"}, "CBMIR.Store"),
    ({"Store": "postgresql"}, "CBMIR.PostgreSQL"),  # neither its own nor Orthanc's section
    ({"Store": "postgresql", "PostgreSQL": {"Hots": "x", "Database": "d"}}, "CBMIR.PostgreSQL.Hots"),
    ({"Store": "postgresql", "PostgreSQL": {"Port": "5432", "Database": "d"}}, "CBMIR.PostgreSQL.Port"),
    ({"ClaimSeconds": 0}, "CBMIR.ClaimSeconds"), ({"NodeName": 3}, "CBMIR.NodeName"),
    ({"ReplicaPollSeconds": 100}, "CBMIR.ReplicaPollSeconds"),
])
def test_a_bad_cluster_setting_names_its_key(cbmir, match):
    with pytest.raises(ConfigError, match=match.replace(".", r"\.")):
        load_config({"CBMIR": cbmir})
