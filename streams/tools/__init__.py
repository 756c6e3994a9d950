"""Tools around the product, not in the delivery path: the demo, the sample receiver,
and every benchmark (:mod:`.bench`, behind ``streams bench``)."""
