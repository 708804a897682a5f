# The production image: paycore only (the sandbox simulator, tests and benches are left out by
# .dockerignore). Dependencies are installed before the source is copied, so a code change
# rebuilds only the last layers.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt
COPY . .
RUN pip install --no-cache-dir --no-deps . && python manage.py collectstatic --no-input -v0
RUN useradd --create-home paycore && chown -R paycore /app
USER paycore
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]
