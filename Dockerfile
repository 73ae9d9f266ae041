# One image for every Tally process: the web server (gunicorn) and the Celery worker.
# docker-compose.yml runs it as `web` and `worker`; PostgreSQL and Redis are stock images.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch: PyPI's Linux x86_64 wheel of torch==2.13.0 is the CUDA build and pulls several GB of
# nvidia-* wheels. The CPU build of the same release is published on PyTorch's own index as
# 2.13.0+cpu, which satisfies the `torch==2.13.0` pin in requirements.txt, so it is installed
# first, alone, from that index; everything else then comes from PyPI and pip finds torch done.
# Point TORCH_INDEX_URL at another PyTorch index (e.g. .../whl/cu128) for a GPU image.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

WORKDIR /app
COPY requirements.txt ./
RUN pip install --index-url "$TORCH_INDEX_URL" "$(grep -E '^torch==' requirements.txt)" \
 && pip install -r requirements.txt

COPY . .

# Static files are collected at build time (whitenoise serves them). The production settings
# refuse to load without a strong key, so this step gets a throwaway one that no layer keeps.
RUN DJANGO_SECRET_KEY="$(python -c 'import secrets; print(secrets.token_urlsafe(64))')" \
    DJANGO_ALLOWED_HOSTS=build \
    python manage.py collectstatic --noinput --settings=config.settings.production -v 0

RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin tally \
 && mkdir -p /app/var \
 && chown -R tally /app/var
USER tally

ENV DJANGO_SETTINGS_MODULE=config.settings.production
EXPOSE 8000
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--access-logfile", "-"]
