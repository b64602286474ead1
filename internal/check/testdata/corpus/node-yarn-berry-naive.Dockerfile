FROM node:20-bullseye
ENV NODE_ENV=production
WORKDIR /usr/src/app
RUN corepack enable
COPY . .
RUN yarn install --immutable
RUN yarn build
CMD ["node", "dist/main.js"]
