import numpy as np
import pandas as pd

from optirag.retrieval.embeddings import RetrieverModel, save_model
from optirag.retrieval.raters import SimilarRaters

# users u0..u3 in 2-D: u1 is u0's nearest, then u2; u3 points the other way
USERS = ["u0", "u1", "u2", "u3"]
EMB = np.array([[1.0, 0.0], [0.9, 0.1], [0.5, 0.5], [-1.0, 0.2]], dtype=np.float32)
EDGES = pd.DataFrame({
    "user_id": ["u0", "u1", "u2", "u3", "u1", "u3"],
    "item_id": ["a", "a", "a", "a", "b", "c"],
    "rating": [10.0, 8.0, 3.0, 1.0, 7.0, 5.0],
})


def test_most_similar_raters_first_never_the_user_itself():
    raters = SimilarRaters(USERS, EMB, EDGES)
    got = raters.top_k("u0", "a", 5)
    assert [r for r, _ in got] == [8.0, 3.0, 1.0]           # u1, u2, u3; u0's own 10 is not shown
    sims = [s for _, s in got]
    assert sims == sorted(sims, reverse=True) and abs(sims[0] - float(EMB[1] @ EMB[0] / np.linalg.norm(EMB[1]))) < 1e-6
    assert raters.top_k("u0", "a", 1) == got[:1]
    assert raters.top_k("u3", "c", 4) == []                  # its only rater is itself
    assert raters.top_k("nobody", "a", 4) == [] and raters.top_k("u0", "zzz", 4) == []


def test_users_without_an_embedding_neither_ask_nor_answer():
    emb = EMB.copy()
    emb[1] = 0.0                                             # u1: cold (LLM retriever: not warm)
    raters = SimilarRaters(USERS, emb, EDGES)
    assert [r for r, _ in raters.top_k("u0", "a", 5)] == [3.0, 1.0]
    assert raters.top_k("u1", "a", 5) == []


def test_from_a_saved_retriever_folder(tmp_path):
    layers = np.stack([EMB, EMB])                            # K = 1
    model = RetrieverModel("v1", "d1", {}, USERS, ["a", "b", "c"], layers,
                           np.zeros((2, 3, 2), np.float32), EMB, np.array([2, 2, 1, 2]))
    folder = save_model(model, tmp_path / "gcn" / "v1")
    raters = SimilarRaters.from_folder(folder, EDGES)
    assert raters.top_k("u0", "a", 2) == SimilarRaters(USERS, EMB, EDGES).top_k("u0", "a", 2)
