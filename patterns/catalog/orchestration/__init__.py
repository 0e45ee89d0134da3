"""Orchestration and choreography: business processes over several services."""
