"""The fusion study: the usual claims about early / mid / late fusion tested on Shapes under one protocol.

`protocol` (models at matched parameters, the runs, the budgets), `runs` (one run: the loop and its scores),
`stats` (metrics over seeds and the verdict rule), `study` (run them all into a results document), `report`
and `plots` (the document as a table and a figure), `cli` (`python -m convformer study`). The committed results
are `RESULTS` (results.json beside this file), read by the app. See docs/study.md.
"""
from pathlib import Path

from .protocol import FULL, MODELS, QUICK, Protocol, RunSpec, plan

RESULTS = Path(__file__).with_name("results.json")

__all__ = ["FULL", "MODELS", "QUICK", "RESULTS", "Protocol", "RunSpec", "plan"]
