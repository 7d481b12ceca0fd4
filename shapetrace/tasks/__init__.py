"""Tasks built on the analysis: `check` (is each size accepted), `sweep` (sizes beside the
domain) and `diff` (two models, or two sizes). They return plain data; the views render it and
the CLI parses arguments. `check` and `sweep` share one per-size runner (`runner.SizeRunner`).
"""
