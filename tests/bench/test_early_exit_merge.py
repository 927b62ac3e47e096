"""early_exit.json keeps every (dataset, variant) result across bench runs."""
from optirag_bench.early_exit import merge_result


def _result(dataset, variant, auc):
    return {"dataset": dataset, "variant": variant, "auc_full": auc, "auc_exit": auc + 0.01,
            "mean_exit_layer": 20.0, "n_layers": 30, "flops_ratio": 0.6, "throughput_ratio": 1.5,
            "compaction_efficiency": 0.9, "sweeps": {"tau": [{"tau": 0.1, "auc": auc}]}}


def test_variants_and_datasets_survive_each_others_runs():
    doc = {}
    merge_result(doc, _result("movielens100k", "none", 0.55))      # no gcn run yet: no summary
    assert doc["datasets"]["movielens100k"] == {"variants": {"none": _result("movielens100k", "none", 0.55)}}
    assert doc["sweeps"] == {} and "auc_full" not in doc
    merge_result(doc, _result("movielens100k", "gcn", 0.60))
    merge_result(doc, _result("bookcrossing", "gcn", 0.50))
    ml = doc["datasets"]["movielens100k"]
    assert ml["variant"] == "gcn" and ml["auc_full"] == 0.60 and ml["variants"]["none"]["auc_full"] == 0.55
    assert set(doc["sweeps"]) == {"movielens100k", "bookcrossing"}
    assert doc["summary_dataset"] == "movielens100k" and doc["auc_full"] == 0.60
    merge_result(doc, _result("movielens100k", "gcn", 0.62))       # a rerun replaces, keeps none
    ml = doc["datasets"]["movielens100k"]
    assert ml["auc_full"] == 0.62 and ml["variants"]["none"]["auc_full"] == 0.55
    assert doc["datasets"]["bookcrossing"]["auc_full"] == 0.50
