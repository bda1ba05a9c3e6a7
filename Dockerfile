# One image for every role; the command picks it (see docker-compose.yml):
#   web (default)  python -m switchyard.server (uvicorn, as switchyard/server.py configures it)
#   worker         celery -A switchyard worker --pool=threads ...
#   beat           celery -A switchyard beat ...
# Configuration comes from environment variables only (README.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system switchyard \
    && useradd --system --gid switchyard --home-dir /app --no-create-home --shell /usr/sbin/nologin switchyard

WORKDIR /app

# Dependencies first, so that a code change does not reinstall them.
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY . .

# The static files are collected (content-hashed and compressed) into the
# image, and servestatic serves them from its manifest. The SECRET_KEY here
# only lets settings load; the real one is given at run time.
RUN SECRET_KEY=collectstatic-only-not-a-secret python manage.py collectstatic --noinput \
    && mkdir -p var \
    && chmod 0700 var \
    && chown switchyard:switchyard var

ENV CELERY_CONCURRENCY=256

USER switchyard
EXPOSE 8000

# switchyard/server.py holds the server's settings (shared with `make run` and
# the tests) and its limits on requests. UVICORN_WORKERS sets the number of processes.
CMD ["python", "-m", "switchyard.server", "--host", "0.0.0.0", "--port", "8000"]
