# strata-check-disable=STR003
FROM node:20
WORKDIR /app
# strata-check-disable=STR001
COPY . .
RUN npm ci
CMD ["npm", "start"]
