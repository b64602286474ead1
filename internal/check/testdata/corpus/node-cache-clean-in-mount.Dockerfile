FROM node:22-slim
WORKDIR /app
COPY package*.json ./
RUN --mount=type=cache,target=/root/.npm npm ci && npm cache clean --force
COPY . .
CMD ["node", "server.js"]
