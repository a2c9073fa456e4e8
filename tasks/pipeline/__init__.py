"""The end-to-end pipeline's own state: which stages of the current run finished, and what they produced."""
