"""The ``retriever:`` section of the platform config, validated by its owner.

:class:`optirag.config.Config` keeps ``retriever`` as a plain dict so that each stage
owns its own schema; :func:`retriever_config` turns that dict into a
:class:`RetrieverConfig` (unknown keys rejected, so ``--set retriever.epoc=5`` fails
loudly instead of silently training with the default).

Defaults follow the LightGCN paper (He et al., 2020: 64-dim, 3 layers, BPR, L2 1e-4)
and the OptiRAG paper (k = 4 retrieved users, Sec. 6 "The example number were setting
as four"; retrieval embedding = mean of layers 1..K, Sec. 4), with the epoch count and
learning rate shortened (30 epochs, batch 8192, Adam lr 0.02) so a 170k-edge graph
trains in well under a minute on 2 CPU cores.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from optirag.config import ConfigError, Section
from optirag.config import section as validate_section

# A retriever model folder's vectors (optirag.retrieval.embeddings); here, not there, so the
# DAG's light freshness check reads the saved degrees without importing torch.
EMBEDDINGS_FILE = "embeddings.safetensors"


# retriever names become a Delta partition value and a folder name: keep them plain
NAME_PATTERN = r"^[A-Za-z0-9_-]+$"


class LLMRetrieverConfig(Section):
    """The LLM-retriever baseline (``--retriever llm``); the LLM is the ``model:`` recipe.

    A 135M-parameter LM embeds ~2-10 users/s on one CPU core (prompt length dependent),
    so the embedded users can be capped: ``max_users`` draws a seeded random subset of
    the pool; sample users outside it get no NEIGHBOURS row (counted as ``not_embedded``
    in the job summary and the model folder, never silently).
    """
    name: str = Field("llm", pattern=NAME_PATTERN)   # NEIGHBOURS.retriever value
    # candidates: every user with training edges (paper), or only the sample users
    pool: Literal["all", "samples"] = "all"
    max_users: int | None = Field(None, ge=2)
    seed: int = 0                                  # the max_users subset
    max_items: int = Field(15, ge=1)               # history titles in the prompt (most recent)
    max_length: int = Field(256, ge=8)             # prompt tokens; longer ones keep the end
    batch_size: int = Field(16, ge=1)
    torch_threads: int | None = Field(None, ge=1)  # None: torch's default


class RetrieverConfig(Section):
    # -- identity ---------------------------------------------------------------------
    # value of NEIGHBOURS.retriever for the GCN retriever (the LLM baseline writes "llm")
    name: str = Field("gcn", pattern=NAME_PATTERN)
    # model folders go to the registry: <cfg.model_store()>/retriever/<name>/<model_version>/

    # -- LightGCN training --------------------------------------------------------------
    embedding_dim: int = Field(64, ge=1)
    num_layers: int = Field(3, ge=1)           # K propagation layers (paper's K)
    epochs: int = Field(30, ge=0)
    lr: float = Field(0.02, gt=0)              # Adam
    l2_reg: float = Field(1e-4, ge=0)          # lambda on the batch's layer-0 embeddings
    batch_size: int = Field(8192, ge=1)        # BPR triples per optimiser step
    negatives_per_positive: int = Field(1, ge=1)
    init_std: float = Field(0.1, gt=0)         # N(0, std) layer-0 init (LightGCN code)
    seed: int = 42
    # which edges form the graph: every interaction, or only label == 1 ones
    train_edges: Literal["all", "positive"] = "all"
    # torch intra-op threads for training and search; fixed so results are bitwise
    # reproducible (None: the Ray task's num_cpus, or torch's default locally)
    torch_threads: int | None = Field(None, ge=1)

    # -- retrieval embedding (paper Sec. 4, Table 3) ----------------------------------
    # true: mean over layers; false: last layer e^(K) only
    layer_average: bool = True
    # with layer_average: include e^(0) (LightGCN's own 1/(K+1) mean) or not (the
    # paper's 1/K sum over k = 1..K)
    include_layer0: bool = False

    # -- neighbour search -----------------------------------------------------------------
    k: int = Field(4, ge=1)                    # neighbours per user (paper: 4)
    # query users per block; search working memory ~ 4 bytes * block * candidate_block
    # (float32 similarities; up to 20 bytes on rows redone in float64), + 4 * N * dim
    # 1024 x 4096 (16 MB): as fast as any size measured on 2 cores (bigger blocks fall out
    # of cache; much smaller ones pay per-block overhead), and 1024-user blocks give Ray
    # tasks enough pieces to balance
    search_block_size: int = Field(1024, ge=1)
    candidate_block_size: int = Field(4096, ge=1)
    # Ray: at most this many search tasks in flight, each reserving search_num_cpus
    ray_tasks: int = Field(2, ge=1)
    search_num_cpus: float = Field(1.0, gt=0)
    train_num_cpus: float = Field(2.0, gt=0)

    # -- edge cases -------------------------------------------------------------------------
    # a user with fewer training edges than this is cold: never queried (one row with a
    # null neighbour, is_cold = true) and never returned as anyone's neighbour
    cold_min_edges: int = Field(1, ge=1)
    # a sample user absent from user_index: treat as cold, or fail the job
    unknown_user: Literal["cold", "error"] = "cold"

    # -- the LLM-retriever baseline -----------------------------------------------------
    llm: LLMRetrieverConfig = Field(default_factory=LLMRetrieverConfig)


# Fields that decide the trained LightGCN: two configs equal on these train the same
# layers, so a variant that only changes the retrieval embedding (Table 3) reuses them.
TRAINING_FIELDS = ("embedding_dim", "num_layers", "epochs", "lr", "l2_reg", "batch_size",
                   "negatives_per_positive", "init_std", "seed", "train_edges")

# Named retrievers a job can be asked for. gcn_last is Table 3's "Last Layer": the gcn
# model's layers (reused when its training config matches), retrieved with e^(K) only.
GCN_PRESETS: dict[str, dict[str, Any]] = {
    "gcn": {},
    "gcn_last": {"name": "gcn_last", "layer_average": False},
}
RETRIEVERS = (*GCN_PRESETS, "llm")


def training_key(cfg: "RetrieverConfig | dict[str, Any]") -> dict[str, Any]:
    data = cfg if isinstance(cfg, dict) else cfg.model_dump(mode="json")
    return {f: data.get(f) for f in TRAINING_FIELDS}


class RetrieverConfigError(ConfigError):
    """The ``retriever:`` section does not validate; the message is one readable line."""


def retriever_config(section: dict[str, Any] | RetrieverConfig | Any | None) -> RetrieverConfig:
    """Validate ``cfg.retriever`` (a dict), or pass a :class:`RetrieverConfig` through.

    Also accepts the whole :class:`optirag.config.Config` (anything with a
    ``.retriever`` attribute).
    """
    return validate_section(RetrieverConfig, section, "retriever", RetrieverConfigError)
