"""Dead letters: scanning the DLQ, replaying it, and redelivering past deliveries."""
