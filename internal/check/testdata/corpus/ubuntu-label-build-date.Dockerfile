FROM ubuntu:22.04
ARG BUILD_DATE
LABEL org.label-schema.build-date=$BUILD_DATE
RUN apt-get update && apt-get install -y curl && rm -rf /var/lib/apt/lists/*
COPY app.sh /app.sh
CMD ["/app.sh"]
