import sys
from pathlib import Path

# The hand-made lake lives beside the prompt tests; share it instead of copying it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "prompts"))

from tiny_rag_lake import rag_lake  # noqa: E402,F401
