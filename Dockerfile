# The worker image used by docker-compose.yml.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY schemas ./schemas
RUN pip install --no-cache-dir . && useradd --system --home /var/lib/streams streams \
    && mkdir -p /var/lib/streams && chown streams /var/lib/streams
USER streams
ENTRYPOINT []
CMD ["streams", "worker"]
