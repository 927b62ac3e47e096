"""Model name -> class."""
from __future__ import annotations

from torch import nn

from optirag.baselines.config import BaselinesConfig
from optirag.baselines.deepfm import DeepFM
from optirag.baselines.din import DIN
from optirag.baselines.features import Vocabularies
from optirag.baselines.gru4rec import GRU4Rec
from optirag.baselines.sim import SIM

MODELS: dict[str, type[nn.Module]] = {"deepfm": DeepFM, "din": DIN, "gru4rec": GRU4Rec, "sim": SIM}


def build_model(name: str, vocab: Vocabularies, cfg: BaselinesConfig) -> nn.Module:
    return MODELS[name](vocab, cfg)
