FROM python:3.11-slim
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
VOLUME /app/data
RUN mkdir -p /app/data/uploads && chown -R nobody /app/data
USER nobody
CMD ["python", "server.py"]
