"""cbmir.tools.orthanc_config.cluster_overrides: what one node of a cluster is configured with."""
from cbmir.tools.orthanc_config import POSTGRESQL_PLUGINS, cluster_overrides

PG = {"Host": "127.0.0.1", "Port": 5433, "Database": "orthanc", "Username": "cbmir",
      "Password": "secret"}


def test_a_node_on_a_shared_folder_finds_it_made_before_it_starts(tmp_path):
    """Nodes started together race to create the shared storage folder, and Orthanc 1.10 stops
    when its create loses ("Cannot create a directory"): the folder exists beforehand."""
    storage = tmp_path / "cluster" / "storage"
    overrides, cbmir = cluster_overrides(PG, storage, "node-3")
    assert storage.is_dir() and overrides["StorageDirectory"] == str(storage)
    assert overrides["PostgreSQL"]["Lock"] is False and overrides["PostgreSQL"]["EnableIndex"]
    assert overrides["PostgreSQL"]["EnableStorage"] is False
    assert POSTGRESQL_PLUGINS["index"] in overrides["Plugins"]
    assert POSTGRESQL_PLUGINS["storage"] not in overrides["Plugins"]
    assert cbmir == {"Store": "postgresql", "NodeName": "node-3"}


def test_without_a_shared_folder_the_files_go_to_postgresql(tmp_path):
    overrides, cbmir = cluster_overrides(PG)
    assert "StorageDirectory" not in overrides and overrides["PostgreSQL"]["EnableStorage"]
    assert POSTGRESQL_PLUGINS["storage"] in overrides["Plugins"]
    assert cbmir == {"Store": "postgresql"}
