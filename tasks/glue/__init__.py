"""GLUE: task table, data loaders, metrics, contamination check, report and promotion gate (pure logic)."""
