"""Experiments made of many runs: ``sweep`` (configs × seeds on Dask, one folder per run, one tidy table),
``projection`` (how long a sweep will take, measured here), and ``repro`` (the paper's experiments as sweeps,
with their claims checked in ``claims`` and reported by ``report``)."""
