import pytest

from optirag.config import ConfigError, load_config, parse_override


def test_layers_merge_in_order_and_overrides_win():
    cfg = load_config("movielens100k", overrides=["ingest.seed=7", "dataset.min_history=5"], lake="/x")
    assert cfg.dataset.format == "recbole" and cfg.dataset.protocol == "chronological"
    assert cfg.ingest.seed == 7 and cfg.dataset.min_history == 5
    assert cfg.spark.master == "local[2]"  # env/local.yaml
    assert cfg.dataset_lake() == "/x/movielens100k"


def test_cluster_env_changes_master_jars_and_ray():
    cfg = load_config("bookcrossing", env="cluster")
    assert cfg.spark.delta_jars == "provided" and cfg.ray.address == "auto"
    assert cfg.spark.conf["spark.sql.shuffle.partitions"] == "400"
    assert cfg.spark.conf["spark.driver.memory"] == "4g"  # deep merge keeps base keys


@pytest.mark.parametrize("bad, message", [
    (dict(dataset="nope"), "unknown dataset 'nope'"),
    (dict(dataset="bookcrossing", env="mars"), "unknown env 'mars'"),
    (dict(dataset="bookcrossing", overrides=["ingest.sed=1"]), "ingest.sed"),
    (dict(dataset="bookcrossing", overrides=["ingest.split.train=0.5"]), "sum to 1"),
    (dict(dataset="bookcrossing", overrides=["novalue"]), "key.path=value"),
    # a dataset YAML with a wrong or empty required field
    (dict(dataset="bookcrossing", overrides=["dataset.files.ratings= "]), "dataset.files.ratings"),
    (dict(dataset="movielens100k", overrides=['dataset.files.inter=""']),
     r"files.inter \(the interactions file of format recbole\) is required"),
    (dict(dataset="movielens100k", overrides=["dataset.files.itme=x.item"]),
     r"\['itme'\] is not a file of format recbole"),
    (dict(dataset="movielens100k", overrides=["dataset.format=recbol"]), "dataset.format"),
    (dict(dataset="movielens100k", overrides=["dataset.positive_threshold="]), "dataset.positive_threshold"),
    (dict(dataset="movielens100k", overrides=["dataset.positive_threshold=6"]), "leaves a class empty"),
    (dict(dataset="amazon", overrides=["dataset.delimiter=;"]), "JSON lines"),
    (dict(dataset="movielens100k", overrides=["dataset.name=bookcrossing"]), "must be the file's name"),
])
def test_bad_config_is_one_clear_error(bad, message):
    with pytest.raises(ConfigError, match=message):
        load_config(**bad)


def test_missing_lake_is_a_clear_error():
    with pytest.raises(ConfigError, match="--lake"):
        load_config("bookcrossing").dataset_lake()


def test_yaml_is_loaded_safely(tmp_path):
    for sub in ("datasets", "env"):
        (tmp_path / sub).mkdir()
    (tmp_path / "base.yaml").write_text("lake: !!python/object/apply:os.system ['echo pwned']\n")
    (tmp_path / "datasets" / "d.yaml").write_text("{}\n")
    (tmp_path / "env" / "local.yaml").write_text("{}\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config("d", conf_dir=tmp_path)


def test_override_values_are_yaml_typed():
    assert parse_override("a.b=3") == {"a": {"b": 3}}
    assert parse_override("a=[1, 2]") == {"a": [1, 2]}
    assert parse_override("a.b=null") == {"a": {"b": None}}


def test_delimiter_is_the_format_s_unless_set():
    assert load_config("movielens100k").dataset.delimiter == "\t"  # RecBole atomic files
    assert load_config("bookcrossing").dataset.delimiter == ","
    assert load_config("bookcrossing", overrides=["dataset.delimiter=;"]).dataset.delimiter == ";"
    assert load_config("amazon").dataset.delimiter is None  # JSON lines
