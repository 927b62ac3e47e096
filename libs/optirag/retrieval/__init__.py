"""GCN-Retriever (paper Sec. 4): LightGCN user embeddings + exact blocked cosine top-k.

Modules: config (RetrieverConfig), lightgcn (training), embeddings (layer choice, model
folder), topk (blocked search), ray_search (Ray tasks), neighbours (NEIGHBOURS rows),
pipeline (run_retriever job body), quality (offline metrics), llm_retriever (baseline).
The search-scaling and GCN-vs-LLM benchmark is optirag_bench.retrieval.
"""
