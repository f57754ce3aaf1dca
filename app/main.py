"""`panel serve app` runs this once per browser tab; the lab itself is the package khrbm.app (`khrbm serve`)."""
import sys, pathlib  # noqa: E401
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))   # a checkout without `pip install -e .`
from khrbm.app.lab import build  # noqa: E402
build().servable()
