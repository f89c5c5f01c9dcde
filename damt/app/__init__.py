"""The app layer: the only code that joins the stages. The ``damt`` command line (cli), the
demo (preprocess then train), and the benchmarks' baseline chain, which the CLI hands to the
stages' bench functions. ``damt/`` outside this package imports neither stage, and the stages
never import this package (tests/test_import_boundaries.py)."""
