"""Retries: the schedule, the delay tiers and the agents that wait on them."""
