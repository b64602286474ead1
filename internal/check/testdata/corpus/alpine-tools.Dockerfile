FROM alpine:3.20
RUN apk add --no-cache curl jq
COPY entrypoint.sh /usr/local/bin/
ENTRYPOINT ["entrypoint.sh"]
