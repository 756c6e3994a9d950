"""The delivery stage: sign, send, classify, record."""
