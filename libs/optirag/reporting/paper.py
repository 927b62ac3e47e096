"""The paper's published numbers, typed from /work/shared/paper/optirag-rec-acl2025.txt.

AUC in points (x100), as printed. Sources: Sec. 6 "Q1" / Table 2 (performance comparison),
Sec. 6 "Q3" / Table 3 (retrieval layer), Sec. 6 "Q4, Q5" / Table 4 (ablation; RPS per
A100 in brackets). The paper's datasets are BookCrossing, Amazon Beauty 2018 and Amazon
Video Games 2018; ours map onto them by PAPER_DATASET (MovieLens-100K has no counterpart).
"""
from __future__ import annotations

PAPER_DATASET = {"bookcrossing": "BookCrossing", "amazon": "Beauty"}

# Table 2 (Sec. 6, Q1). Row key -> {paper dataset: AUC}
TABLE2 = {
    "DeepFM": {"BookCrossing": 71.15, "Beauty": 70.05, "Video Games": 77.25},
    "DIN": {"BookCrossing": 71.17, "Beauty": 69.02, "Video Games": 77.03},
    "SIM": {"BookCrossing": 68.10, "Beauty": 61.11, "Video Games": 74.75},
    "GRU4Rec": {"BookCrossing": 60.75, "Beauty": 70.04, "Video Games": 63.20},
    "TALLRec": {"BookCrossing": 70.74, "Beauty": 90.37, "Video Games": 81.41},
    "LLM-retriever": {"BookCrossing": 69.05, "Beauty": 89.65, "Video Games": 83.15},
    "GCN-retriever": {"BookCrossing": 72.51, "Beauty": 94.72, "Video Games": 93.46},
    "GCN-earlyexit": {"BookCrossing": 73.28, "Beauty": 96.37, "Video Games": 97.19},
}

# Table 3 (Sec. 6, Q3): retrieval embedding = average of GCN layers vs last layer.
TABLE3 = {
    "BookCrossing": {"average": 72.51, "last_layer": 69.45},
    "Beauty": {"average": 94.72, "last_layer": 93.55},
    "Video Games": {"average": 89.77, "last_layer": 85.63},
}

# Table 4 (Sec. 6, Q4/Q5): (retriever, early exit) -> (AUC, RPS).
TABLE4 = {
    "BookCrossing": {(False, False): (70.74, 15.77), (True, False): (72.51, 4.66),
                     (False, True): (53.17, 17.85), (True, True): (73.28, 5.59)},
    "Beauty": {(False, False): (90.37, 15.09), (True, False): (94.72, 4.78),
               (False, True): (92.56, 20.32), (True, True): (96.37, 4.96)},
    "Video Games": {(False, False): (81.41, 8.91), (True, False): (89.77, 3.83),
                    (False, True): (82.32, 7.89), (True, True): (97.19, 4.57)},
}

# Setup facts the comparison sentences need (Sec. 6, "Implementation Details").
SETUP = ("Vicuna-7B scorer tuned few-shot (<10% of the training data), 4 retrieved users, "
         "exit layers 5/10/15/20(/25/30), RPS per NVIDIA A100")
