"""rca_engine."""
