"""OptiRAG: batch CTR scoring with a RAG-enhanced, multi-head early-exit LLM recommender."""
__version__ = "0.1.0"
