FROM python:3.11
RUN pip install poetry==1.8.3
WORKDIR /app
COPY . .
RUN poetry config virtualenvs.create false && poetry install --no-interaction --no-ansi
CMD ["python", "-m", "myapp"]
