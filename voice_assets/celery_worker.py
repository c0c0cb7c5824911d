"""The celery app of voice-assets workers: ``celery -A voice_assets.celery_worker worker``
(``voice-assets worker`` runs it). It executes the steps the celery executor sends."""

from dagster_celery.tasks import create_task

from voice_assets.distributed import celery_app

app = celery_app()
execute_plan = create_task(app)
