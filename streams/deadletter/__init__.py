"""Dead letters: scanning the DLQ, replaying it, redelivering past deliveries, and parking
what a stage cannot accept on ``events.invalid`` (:mod:`streams.deadletter.parking`)."""
