"""The fan-out stage: events joined with subscriptions become deliveries."""
