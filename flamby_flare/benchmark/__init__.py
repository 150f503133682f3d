"""FLamby's benchmark protocol on NVFlare: cells (dataset, method, seed), a resumable results store,
central baselines (pooled, local), federated cells through the NVFlare simulator, and the report."""
