# syntax=docker/dockerfile:1.7
FROM node:20-alpine AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci
COPY web/ ./
RUN npm run build

FROM python:3.12-slim AS api
WORKDIR /srv
COPY api/ /srv/
RUN pip install --no-cache-dir -r requirements.txt
COPY --from=web /web/dist /srv/static
CMD ["uvicorn", "main:app", "--host", "0.0.0.0"]
