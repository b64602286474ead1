FROM python:3.11-slim
ARG GIT_SHA
ENV APP_VERSION=$GIT_SHA
RUN apt-get update && apt-get install -y --no-install-recommends build-essential && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt
COPY . .
