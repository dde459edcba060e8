"""LangGraph pipelines: sleep-time (offline) and query (online)."""

from sleeptime.graphs.query import QueryDeps, QueryState, build_query_graph
from sleeptime.graphs.sleep import SleepDeps, SleepState, build_sleep_graph

__all__ = [
    "QueryDeps",
    "QueryState",
    "SleepDeps",
    "SleepState",
    "build_query_graph",
    "build_sleep_graph",
]
