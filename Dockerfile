# The Offgrid image: one image, four processes (web, worker, beat, flower) chosen by command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
RUN useradd --create-home --uid 10001 offgrid

COPY pyproject.toml README.md ./
COPY api ./api
COPY config ./config
COPY push ./push
COPY sync ./sync
COPY tasks ./tasks
COPY workers ./workers
RUN pip install --no-cache-dir .

COPY Procfile gunicorn.conf.py ./
USER offgrid
EXPOSE 8000 5555
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--workers", "2", "api:create_app()"]
