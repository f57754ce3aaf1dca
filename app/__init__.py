"""The Panel app of khrbm (`panel serve app`): main.py (served per session), views.py, presets.py."""
