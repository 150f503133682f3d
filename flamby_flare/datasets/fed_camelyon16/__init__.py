"""Fed-Camelyon16 (FLamby): not implemented in flamby-flare yet; `common.py` holds FLamby's constants, which the
job generator uses. `flamby_flare.datasets.get_dataset("fed_camelyon16")` refuses it with a clear message."""
