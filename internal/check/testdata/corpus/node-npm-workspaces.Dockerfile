FROM node:20 AS deps
WORKDIR /repo
COPY package.json package-lock.json ./
RUN npm ci

FROM deps AS build
COPY . .
RUN npm run build --workspace=web
