FROM python:3.12-slim
WORKDIR /app
COPY requirements.txt .
RUN --mount=type=cache,target=/root/.cache/pip pip install -r requirements.txt
COPY config/settings.prod.toml ./config/
COPY app ./app
CMD ["python", "-m", "app"]
