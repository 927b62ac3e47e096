"""Hand-made samples/items for the baseline tests (pandas frames shaped like load_frames)."""
from __future__ import annotations

import numpy as np
import pandas as pd


def toy_frames(n_users: int = 80, per_user: int = 5, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """20 items; label = 1 iff the target is an even item (a rule every model can learn)."""
    rng = np.random.default_rng(seed)
    items = pd.DataFrame({
        "item_id": [f"i{k}" for k in range(20)],
        "author": [f"a{k % 5}" for k in range(20)],
        "year": [1990.0 + k % 4 for k in range(20)],
        "publisher": [None if k % 7 == 0 else f"p{k % 3}" for k in range(20)],
        "genres": [[f"g{k % 3}", f"g{(k + 1) % 3}"] if k % 2 else None for k in range(20)],
    })
    rows = []
    for u in range(n_users):
        split = "train" if u < int(0.7 * n_users) else ("valid" if u < int(0.85 * n_users) else "test")
        for j in range(per_user):
            target = int(rng.integers(20))
            n_hist = int(rng.integers(1, 8))
            hist = rng.integers(20, size=n_hist)
            rows.append({
                "sample_id": f"s{u}_{j}", "user_id": f"u{u}", "item_id": f"i{target}",
                "label": int(target % 2 == 0), "split": split,
                "hist_items": [f"i{h}" for h in hist], "hist_labels": [int(h % 2 == 0) for h in hist],
            })
    return pd.DataFrame(rows), items
