"""Multi-head early exit for Yes/No CTR scoring (paper section 5).

config   -- EarlyExitConfig, the typed `early_exit:` section
heads    -- ExitHead / ExitHeads (init from the model's own head), save/load
training -- per-layer CE training of the heads on a frozen model, depth-decayed LRs
rules    -- pure, batched exit rules (probability-based of paper 5.3, confidence)
engine   -- layer-by-layer forward with per-sample exit and batch compaction
platt    -- Platt rescaling: every head's P(Yes) on one scale
calibration -- the exit rule the heads serve with, chosen on valid rows
job      -- jobs.train_exit_heads' body: heads fitted, then their rule chosen and saved
"""
