FROM python:3.10
ENV PYTHONUNBUFFERED 1
RUN apt-get update
RUN apt-get install -y libpq-dev gettext
RUN mkdir /code
WORKDIR /code
ADD requirements.txt /code/
RUN pip install -r requirements.txt
ADD . /code/
