"""One reproducible benchmark and fault-injection harness: ``streams bench SCENARIO``.

Every performance and reliability claim of the product comes from here, and
anyone can rerun it. A run starts what it needs and stops all of it by PID
(also on errors):

- a Kafka broker: the one at ``STREAMS_KAFKA_BOOTSTRAP`` when it answers, else
  a private :class:`~streams.kafka.local.LocalKafka` on free ports under the run
  directory (``kill-broker`` always uses a private one, the only broker it may
  SIGKILL);
- N ``streams worker`` processes with the run's own topic prefix, app id,
  state directories and API ports, one admin token and one secrets key;
- a receiver: the sample receiver's app (:class:`streams.tools.receiver.Receiver`)
  in one or more processes sharing a port with SO_REUSEPORT, each appending
  every request to its own JSON-lines ledger (:mod:`streams.tools.bench.node`).

Subscriptions are created through the management API, events are published
with :class:`~streams.publish.EventPublisher`, and the result is checked
against the receiver-side ledger and the dead-letter topic: every
(event, subscription) pair is delivered or parked with a reason, duplicates
are counted. Results go to ``docs/bench-results/<scenario>.json`` and a
section of ``docs/benchmarks.md``.

Modules: :mod:`.config` (scenarios, sizes, validation), :mod:`.procs`
(processes, broker, workers, receivers), :mod:`.ledger` (ledger and DLQ
checks), :mod:`.stats`, :mod:`.load` (publishing and watching a run),
:mod:`.scenarios`, :mod:`.report`, :mod:`.cli`.
"""
