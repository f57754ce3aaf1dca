"""The Panel app of khrbm: served per browser tab by `panel serve app` (app/main.py) or `khrbm serve`.

Importing this package does not import Panel; the modules that build widgets do.
"""
