"""Label Studio API calls (label-studio-sdk): projects, idempotent task sync, annotation polling.

Every network failure is turned into ServiceUnavailableError with a message that says whether
the server is down, slow or refusing the token, and never contains the token itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import httpx
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError

from voice_assets.errors import ServiceUnavailableError, VoiceAssetsError
from voice_assets.progress import Progress
from voice_assets.review.corrections import AnnotationRecord
from voice_assets.review.server import file_lock
from voice_assets.review.tasks import (
    KINDS,
    SPEAKER_NAMING,
    UTTERANCE_REVIEW,
    TaskSpec,
    label_config,
)

T = TypeVar("T")

MARKER = "voice-assets"
_TITLES = {UTTERANCE_REVIEW: "utterances", SPEAKER_NAMING: "speaker names"}
_DM_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"


def _plain(obj: Any) -> Any:
    """SDK objects and dicts alike as plain JSON-able dicts."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    return obj


def parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value).replace("Z", "+00:00")
    ts = datetime.fromisoformat(text)
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


@dataclass
class SyncReport:
    """What one episode's push did, per project kind."""

    project_id: int
    created: int = 0
    updated: int = 0
    deleted: int = 0
    kept_annotated: int = 0
    task_ids: dict[str, int] = field(default_factory=dict)
    audio_urls: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class ReviewProject:
    id: int
    kind: str
    series: str


class ReviewClient:
    """Thin, typed wrapper over label-studio-sdk for the review loop."""

    def __init__(self, url: str, token: str, timeout_s: float = 10.0, max_retries: int = 1):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._sdk = LabelStudio(
            base_url=self.url, api_key=token, timeout=timeout_s, max_retries=max_retries
        )
        self._users: dict[int, str] = {}

    # ----------------------------------------------------------------------- errors
    def call(self, what: str, fn: Callable[[], T]) -> T:
        """Run one API call; map transport and auth failures to ServiceUnavailableError."""
        try:
            return fn()
        except httpx.TimeoutException as exc:
            raise ServiceUnavailableError(
                f"Label Studio at {self.url} is slow: {what} timed out after {self.timeout_s:.0f} s"
            ) from exc
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.NetworkError) as exc:
            raise ServiceUnavailableError(
                f"Label Studio at {self.url} is down: {what} could not connect "
                f"({type(exc).__name__}); start it with `voice-assets labelstudio up`"
            ) from exc
        except ApiError as exc:
            code = exc.status_code
            if code in (401, 403):
                raise ServiceUnavailableError(
                    f"Label Studio at {self.url} refuses our API token (HTTP {code}) during "
                    f"{what}; check LABEL_STUDIO_API_KEY or the token file under "
                    "$VOICE_ASSETS_HOME/label-studio"
                ) from exc
            if code is not None and (code >= 500 or code in (408, 429)):
                raise ServiceUnavailableError(
                    f"Label Studio at {self.url} failed during {what} (HTTP {code})"
                ) from exc
            detail = exc.body if isinstance(exc.body, (dict, str)) else ""
            raise VoiceAssetsError(
                f"Label Studio at {self.url} rejected {what} (HTTP {code}): {detail}"
            ) from exc

    def ping(self) -> None:
        """Raise ServiceUnavailableError unless the server answers and accepts the token."""
        self.call("whoami", lambda: self._sdk.users.whoami())

    # ----------------------------------------------------------------------- projects
    def projects(self) -> list[ReviewProject]:
        """Our projects (recognised by the marker in their description)."""
        found = []
        for p in self.call("list projects", lambda: list(self._sdk.projects.list(page_size=100))):
            desc = (getattr(p, "description", None) or "").strip()
            parts = desc.split(":")
            if len(parts) >= 3 and parts[0] == MARKER and parts[1] in KINDS:
                found.append(ReviewProject(int(p.id), parts[1], ":".join(parts[2:])))
        return found

    def ensure_project(
        self,
        kind: str,
        series: str,
        model_version: str,
        local_root: Path | None = None,
        lock_dir: Path | None = None,
    ) -> int:
        """The project for (kind, series), created on first use; its config follows the XML file.

        ``lock_dir``: runs of several episodes of one series in parallel processes take a file
        lock there, so only one of them creates the project.
        """
        if lock_dir is None:
            return self._ensure_project(kind, series, model_version, local_root)
        with file_lock(Path(lock_dir) / f".project-{kind}-{series}.lock"):
            return self._ensure_project(kind, series, model_version, local_root)

    def _ensure_project(
        self, kind: str, series: str, model_version: str, local_root: Path | None
    ) -> int:
        config = label_config(kind)
        for p in sorted(self.projects(), key=lambda p: p.id):
            if p.kind == kind and p.series == series:
                project = self.call("get project", lambda pid=p.id: self._sdk.projects.get(pid))
                changes: dict[str, Any] = {}
                if (project.label_config or "").strip() != config.strip():
                    changes["label_config"] = config
                if project.model_version != model_version:
                    changes["model_version"] = model_version
                if changes:
                    self.call(
                        "update project",
                        lambda pid=p.id, c=changes: self._sdk.projects.update(pid, **c),
                    )
                if local_root is not None:
                    self.ensure_local_storage(p.id, local_root)
                return p.id
        title = f"{series[:30]} · {_TITLES[kind]}"
        created = self.call(
            "create project",
            lambda: self._sdk.projects.create(
                title=title[:50],
                description=f"{MARKER}:{kind}:{series}",
                label_config=config,
                sampling="Uncertainty sampling",
                model_version=model_version,
                show_collab_predictions=True,
                maximum_annotations=1,
                show_skip_button=True,
            ),
        )
        pid = int(created.id)
        if local_root is not None:
            self.ensure_local_storage(pid, local_root)
        return pid

    def ensure_local_storage(self, project_id: int, root: Path) -> None:
        """Let Label Studio serve the task audio under ``root`` (never synced: no task import)."""
        root_s = str(Path(root).resolve())
        existing = self.call(
            "list local storages",
            lambda: self._sdk.import_storage.local.list(project=project_id),
        )
        if any(getattr(s, "path", None) == root_s for s in existing):
            return
        self.call(
            "create local storage",
            lambda: self._sdk.import_storage.local.create(
                project=project_id,
                path=root_s,
                use_blob_urls=False,
                title="voice-assets audio",
                description="task audio (never synced)",
                synchronizable=False,
            ),
        )

    # ----------------------------------------------------------------------- tasks
    def _episode_filter(self, episode: str) -> str:
        return json.dumps(
            {
                "filters": {
                    "conjunction": "and",
                    "items": [
                        {
                            "filter": "filter:tasks:data.episode",
                            "operator": "equal",
                            "type": "String",
                            "value": episode,
                        }
                    ],
                }
            }
        )

    def episode_tasks(self, project_id: int, episode: str) -> list[dict[str, Any]]:
        """Tasks of one episode in a project, with annotations and predictions."""
        query = self._episode_filter(episode)
        tasks = self.call(
            "list episode tasks",
            lambda: list(
                self._sdk.tasks.list(project=project_id, query=query, fields="all", page_size=100)
            ),
        )
        return [_plain(t) for t in tasks if (_plain(t).get("data") or {}).get("episode") == episode]

    def sync_tasks(
        self,
        project_id: int,
        episode: str,
        specs: Sequence[TaskSpec],
        audio_urls: dict[str, str],
        progress: Progress | None = None,
    ) -> SyncReport:
        """Make the project's tasks of ``episode`` match ``specs`` (idempotent, no duplicates).

        Same key: data and prediction replaced in place (annotations kept). Key gone: deleted,
        unless a person annotated it. New key: imported, most doubtful first.
        """
        report = SyncReport(project_id)
        existing = self.episode_tasks(project_id, episode)
        by_key: dict[str, dict[str, Any]] = {}
        for task in existing:
            key = (task.get("data") or {}).get("task_key")
            if key in by_key:  # a duplicate from an interrupted push: keep the annotated one
                keep, drop = (
                    (by_key[key], task) if by_key[key].get("annotations") else (task, by_key[key])
                )
                if not drop.get("annotations"):
                    self.call(
                        "delete duplicate task",
                        lambda tid=drop["id"]: self._sdk.tasks.delete(str(tid)),
                    )
                    report.deleted += 1
                by_key[key] = keep
            else:
                by_key[key] = task
        wanted = {s.key for s in specs}
        for key, task in by_key.items():
            if key in wanted:
                continue
            if task.get("annotations") or task.get("total_annotations"):
                report.kept_annotated += 1
                continue
            self.call("delete stale task", lambda tid=task["id"]: self._sdk.tasks.delete(str(tid)))
            report.deleted += 1
        new: list[TaskSpec] = []
        for i, spec in enumerate(specs):
            data = {**spec.data, "audio": audio_urls[spec.key]}
            prediction = {
                "result": spec.result,
                "score": spec.score,
                "model_version": spec.data["model_version"],
            }
            task = by_key.get(spec.key)
            if task is None:
                new.append(spec)
                continue
            tid = int(task["id"])
            if task.get("data") != data:
                self.call(
                    "update task", lambda d=data, t=tid: self._sdk.tasks.update(str(t), data=d)
                )
            preds = task.get("predictions") or []
            same = len(preds) == 1 and all(preds[0].get(k) == v for k, v in prediction.items())
            if not same:
                for p in preds:
                    pid = p["id"] if isinstance(p, dict) else p
                    self.call(
                        "delete prediction", lambda pid=pid: self._sdk.predictions.delete(pid)
                    )
                self.call(
                    "create prediction",
                    lambda t=tid, p=prediction: self._sdk.predictions.create(task=t, **p),
                )
            report.updated += 1
            report.task_ids[spec.key] = tid
            if progress:
                progress("review tasks", i + 1, len(specs))
        if new:
            payload = [
                {
                    "data": {**s.data, "audio": audio_urls[s.key]},
                    "predictions": [
                        {
                            "result": s.result,
                            "score": s.score,
                            "model_version": s.data["model_version"],
                        }
                    ],
                }
                for s in new
            ]
            for start in range(0, len(payload), 200):
                chunk = payload[start : start + 200]
                self.call(
                    "import tasks",
                    lambda c=chunk: self._sdk.projects.import_tasks(
                        project_id, request=c, return_task_ids=True
                    ),
                )
            report.created = len(new)
        for task in self.episode_tasks(project_id, episode):
            data = task.get("data") or {}
            report.audio_urls.add(str(data.get("audio")))
            if data.get("task_key") in wanted:
                report.task_ids[data["task_key"]] = int(task["id"])
        if progress:
            progress("review tasks", len(specs), len(specs))
        return report

    # ----------------------------------------------------------------------- annotations
    def annotator(self, user_id: int | None) -> str:
        if user_id is None:
            return "unknown"
        if user_id not in self._users:
            try:
                user = self.call("get user", lambda: self._sdk.users.get(user_id))
                self._users[user_id] = user.email or user.username or str(user_id)
            except VoiceAssetsError:
                self._users[user_id] = f"user {user_id}"
        return self._users[user_id]

    def annotations_since(
        self, since: datetime | None, lookback_s: float = 120.0, budget_s: float = 40.0
    ) -> list[AnnotationRecord]:
        """Every annotation of our projects updated after ``since - lookback_s`` (all if None).

        Raises ServiceUnavailableError (down, slow, 401) or when the pages could not all be
        read within ``budget_s``: a partial read must not move the sensor's cursor.
        """
        deadline = time.monotonic() + budget_s
        records: list[AnnotationRecord] = []
        items: list[dict[str, Any]] = [
            {
                "filter": "filter:tasks:total_annotations",
                "operator": "greater",
                "type": "Number",
                "value": 0,
            },
        ]
        if since is not None:
            # A task's updated_at is touched when one of its annotations is saved (slightly
            # before the annotation's own timestamp), so filter with the same lookback.
            low = (since - timedelta(seconds=lookback_s)).astimezone(UTC)
            items.append(
                {
                    "filter": "filter:tasks:updated_at",
                    "operator": "greater",
                    "type": "Datetime",
                    "value": low.strftime(_DM_TIME),
                }
            )
        query = json.dumps({"filters": {"conjunction": "and", "items": items}})
        for project in self.projects():

            def fetch(pid: int = project.id) -> list[Any]:
                out = []
                for task in self._sdk.tasks.list(
                    project=pid, query=query, fields="all", page_size=100
                ):
                    out.append(task)
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout("annotation polling exceeded its time budget")
                return out

            for task in self.call(f"list annotated tasks of project {project.id}", fetch):
                task = _plain(task)
                for ann in task.get("annotations") or []:
                    ann = _plain(ann)
                    updated = parse_time(ann.get("updated_at") or ann.get("created_at"))
                    if since is not None and updated <= since - timedelta(seconds=lookback_s):
                        continue
                    records.append(
                        AnnotationRecord(
                            annotation_id=int(ann["id"]),
                            task_id=int(task["id"]),
                            project_kind=project.kind,
                            task_data=task.get("data") or {},
                            result=list(ann.get("result") or []),
                            annotator=self.annotator(ann.get("completed_by")),
                            updated_at=updated,
                            was_cancelled=bool(ann.get("was_cancelled")),
                        )
                    )
        records.sort(key=lambda r: (r.updated_at, r.annotation_id))
        return records
