# streamcnn on the CPU, with the control server (dashboard, metrics, API) on port 8080.
#
#   docker build -t streamcnn .
#   docker run --rm -p 8080:8080 -e STREAMCNN_TOKEN=change-me -v "$PWD/config:/config" streamcnn
#   open http://127.0.0.1:8080/?token=change-me
#
# /config/pipelines.yaml is the run's file (edits are applied while it runs: --watch); models and
# sample videos are downloaded into the cache volume on first use (or mount a STREAMCNN_ASSETS folder).
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 STREAMCNN_CACHE=/cache
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streamcnn ./streamcnn
COPY plugins ./plugins
RUN pip install '.[cpu,track]' && pip install --no-deps 'trackers==2.6.1'
COPY pipelines.yaml /config/pipelines.yaml

VOLUME ["/config", "/cache"]
EXPOSE 8080
# 0.0.0.0 answers other machines, so the server refuses to start without STREAMCNN_TOKEN (or --token-file)
CMD ["streamcnn", "run", "/config/pipelines.yaml", "--serve", "0.0.0.0:8080", "--watch"]
