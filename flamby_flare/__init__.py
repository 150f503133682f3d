"""flamby-flare: the FLamby cross-silo healthcare benchmark on NVIDIA FLARE.

Sub-packages: ``flamby_flare.datasets`` (FLamby's datasets with their natural splits, baselines,
losses and metrics), ``flamby_flare.download`` (verified acquisition from the public sources or a
local mirror), ``flamby_flare.results`` (results files and tables) and ``flamby_flare.cli``.
"""

__version__ = "0.1.0"
