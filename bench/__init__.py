"""`make bench`: the performance of d06 on one machine, scenario by scenario (docs/performance.md)."""
