"""`python -m load_tests chaos <scenario>`: faults injected into a local stack (loopback
only, bounded in count and time) with exact accounting of every message."""

from load_tests.chaos.scenarios import SCENARIOS, ChaosOptions, run_scenario

__all__ = ["SCENARIOS", "ChaosOptions", "run_scenario"]
