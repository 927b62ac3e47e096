"""Train one baseline: Adam on BCE over the train split, early stopping on the valid AUC."""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import log_loss
from torch import nn

from optirag.baselines.config import BaselinesConfig
from optirag.baselines.features import Encoded, Vocabularies
from optirag.baselines.models import build_model
from optirag.evaluation.metrics import auc_or_none


def logloss(labels: np.ndarray, probs: np.ndarray) -> float:
    return float(log_loss(labels, np.clip(probs, 1e-7, 1 - 1e-7), labels=[0, 1]))


@dataclass
class TrainResult:
    model: nn.Module
    valid_auc: float | None
    best_epoch: int
    epochs_run: int
    train_loss: list[float] = field(default_factory=list)
    seconds: float = 0.0


@torch.no_grad()
def predict(model: nn.Module, data: Encoded, batch_size: int) -> np.ndarray:
    """Click probabilities for every sample of `data`, in order."""
    model.eval()
    out = [torch.sigmoid(model(data.batch(slice(i, i + batch_size))))
           for i in range(0, len(data), batch_size)]
    return torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)


def train(name: str, vocab: Vocabularies, train_data: Encoded, valid_data: Encoded,
          cfg: BaselinesConfig, seed: int) -> TrainResult:
    """Fit model `name`; returns it with the weights of its best validation epoch."""
    torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(seed)
    start = time.perf_counter()
    model = build_model(name, vocab, cfg)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(seed)
    best_score, best_auc, best_state, best_epoch, losses, epoch = float("-inf"), None, None, 0, [], 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order, total = torch.randperm(len(train_data), generator=gen), 0.0
        for i in range(0, len(order), cfg.batch_size):
            b = train_data.batch(order[i: i + cfg.batch_size])
            if len(b["label"]) < 2:   # BatchNorm (Dice) needs two rows
                continue
            loss = loss_fn(model(b), b["label"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(b["label"])
        losses.append(total / max(len(train_data), 1))
        # no valid AUC (one class): keep the last epoch
        v = auc_or_none(valid_data.label.numpy(), predict(model, valid_data, cfg.eval_batch_size))
        score = v if v is not None else float(epoch)
        if score > best_score:
            best_score, best_auc, best_epoch = score, v, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= cfg.patience:
            break
    model.load_state_dict(best_state)
    return TrainResult(model, best_auc, best_epoch, epoch, losses, time.perf_counter() - start)
