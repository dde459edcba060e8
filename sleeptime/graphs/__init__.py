"""The sleep-time pipeline as a LangGraph graph (the online path is a plain function
in :mod:`sleeptime.online`: one keyed read and at most one model call)."""

from sleeptime.graphs.sleep import SleepDeps, SleepState, build_sleep_graph

__all__ = ["SleepDeps", "SleepState", "build_sleep_graph"]
