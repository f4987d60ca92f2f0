"""The fuzz harness is run by hand (see its docstring), never collected by pytest."""

collect_ignore = ["fuzz_load_filter.py"]
