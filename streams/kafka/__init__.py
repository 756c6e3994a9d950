"""Everything the stages need from Kafka, in one package.

Topics and their layout (:mod:`.topics`), the commit-order contract
(:mod:`.commits`), offsets and lag (:mod:`.offsets`), the one librdkafka
producer (:mod:`.output`), the Faust app and its consumer
(:mod:`.faust_consumer`), TLS/SASL settings for all three client libraries
(:mod:`.security`) and the local broker for development and tests
(:mod:`.local`). Nothing here imports a stage.
"""
