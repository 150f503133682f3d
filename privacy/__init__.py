"""Differential privacy for flamby-flare jobs (Opacus DP-SGD at the sites, client-level DP filters).

Empty for now: the privacy layer plugs into ``executors.FlambySiteExecutor`` and the job configuration.
"""
