FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY prevent ./prevent
COPY consumers ./consumers
COPY notifiers ./notifiers
COPY playbooks ./playbooks
RUN pip install --no-cache-dir . && useradd --create-home prevent
USER prevent
ENV PREVENT_PLAYBOOKS_DIR=/app/playbooks PREVENT_VAR_DIR=/tmp/prevent PREVENT_DEMO=false
ENTRYPOINT ["prevent"]
