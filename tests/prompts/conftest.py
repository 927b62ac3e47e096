from tiny_rag_lake import rag_lake  # noqa: F401  (the hand-made lake fixture)
