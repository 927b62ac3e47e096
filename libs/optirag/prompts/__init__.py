"""RAG prompts for the LLM CTR scorer (paper section 4): instruction + similar users'
interactions + the user's own history (the *prefix*, shared by every candidate item of a
user) + the target item and answer cue (the *suffix*).

`text` holds the pure functions (no Spark, no model); `builder` builds the `prompts`
table with Spark.
"""
