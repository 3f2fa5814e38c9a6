# The project image. One image runs every service of docker-compose.yml but PostgreSQL and Redis:
# the API (the default command), the MLflow server and each Airflow component (compose sets the
# command). CPU only. Build: docker build -t retention-platform .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    RETENTION_HOME=/var/lib/retention \
    AIRFLOW_HOME=/var/lib/retention/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/app/dags \
    AIRFLOW__CORE__LOAD_EXAMPLES=False

# libgomp1: the OpenMP runtime of torch and scikit-learn (psycopg2-binary brings its own libpq).
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*

# A fixed uid, so a host folder or volume can be given to it; nothing runs as root. The state
# folders exist in the image with that owner, so named volumes mounted there start writable.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin retention \
 && mkdir -p /app /var/lib/retention /var/lib/mlflow/artifacts \
 && chown -R retention:retention /app /var/lib/retention /var/lib/mlflow \
 && python -m venv "$VIRTUAL_ENV"

WORKDIR /app

# Dependencies first, in their own layers: rebuilt only when the lock or pyproject.toml change.
COPY requirements.lock pyproject.toml ./
# torch 2.13.0 from the CPU index: PyPI's Linux wheel pulls the CUDA libraries (GBs) this image never
# uses. The lock pins torch==2.13.0 without a local tag, so 2.13.0+cpu satisfies it below.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0 \
 && pip install -c requirements.lock setuptools \
 && python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/deps.txt \
 && pip install -c requirements.lock -r /tmp/deps.txt \
 && rm /tmp/deps.txt

# What a deployment adds to the locked stack: asyncpg (Airflow 3 opens an async engine beside the
# sync one, so its metadata on PostgreSQL needs it). The Celery executor, its Redis client and
# Flower (the compose `celery` profile) are in the lock.
ARG DEPLOY_PACKAGES="asyncpg==0.32.0"
RUN pip install -c requirements.lock $DEPLOY_PACKAGES

# The project, editable: params.yaml, dags/ and great_expectations/ are found next to the package.
COPY --chown=retention:retention . .
RUN pip install --no-deps --no-build-isolation -e . \
 && retention --help > /dev/null

USER retention
VOLUME ["/var/lib/retention"]
EXPOSE 8000

# The marketing API (RETENTION_API_* settings; tokens from the environment, never baked in).
CMD ["retention", "serve", "--host", "0.0.0.0"]
