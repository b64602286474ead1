FROM python:3.12-slim AS builder
ENV POETRY_VERSION=1.8.3 POETRY_VIRTUALENVS_IN_PROJECT=1
RUN pip install "poetry==$POETRY_VERSION"
WORKDIR /app
COPY pyproject.toml poetry.lock ./
RUN --mount=type=cache,target=/root/.cache/pypoetry poetry install --no-root --only main
COPY src ./src
RUN poetry install --only-root

FROM python:3.12-slim
COPY --from=builder /app /app
CMD ["/app/.venv/bin/python", "-m", "app"]
