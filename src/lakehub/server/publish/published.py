"""Notebooks published read-only, as their owners and their readers see them.

Rules:
- A publication is its owner's (by name); each publish is a new version: an immutable snapshot
  of the notebook and its rendered page in the owner's lake (``published/<id>/<version>/``,
  in their quota). Its page is rendered by a worker thread of the control plane, never in a
  request; until a version is ready, the page shows the newest one that is.
- Its page is found by its link alone: ``pub/<link>``, 32 unguessable characters. Who may open
  it is its audience: ``private`` (its owner), ``space`` (the space's readers, as the grants say
  when the page is asked for), ``hub`` (every LakeHub user) or ``public`` (anyone with the link,
  no login). A new link retires the old one; expiry turns the page away (410) until the owner
  extends it; unpublishing deletes the versions and their files. Anyone else, or a link that
  does not exist, gets the same 404.
- A page whose bytes in the lake no longer match the SHA-256 recorded when it was rendered is not
  shown: a version never changes after it is published.
- Views are counted for every opening by someone other than the owner.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import re
import secrets
import tempfile
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

from pydantic import BaseModel, Field
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from lakehub.server.db import Database
from lakehub.server.identity.users import home_bucket, space_bucket
from lakehub.server.models.base import ArtifactStore, ModelsError, Reader
from lakehub.server.models.owners import Access
from lakehub.server.publish.base import PublishError, Renderer
from lakehub.server.publish.tables import Publication, PublishedVersion
from lakehub.server.schema import Instant, from_ms, from_ms_or_none, now_ms
from lakehub.server.vault import Vault

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
AUDIENCES = ("private", "space", "hub", "public")
MAX_NOTEBOOK = 200 * 2**20
log = logging.getLogger("lakehub.publish")


class VersionView(BaseModel):
    version: int
    state: str = Field(description="rendering, ready or failed")
    message: str = Field(description="why it failed, or what the page leaves out")
    source: str = Field(description="what was published: a file, a lake path or a job's run")
    notebook_bytes: int
    page_bytes: int
    created_at: Instant
    rendered_at: Instant | None


class PublicationView(BaseModel):
    name: str
    owner: str
    title: str
    audience: str = Field(description="private, space, hub or public")
    space: str = Field(description="the space whose readers may open it (audience space)")
    url: str = Field(description="its page, below the hub's LakeHub prefix: pub/<link>")
    views: int = Field(description="openings by anyone but its owner")
    expires_at: Instant | None
    expired: bool
    versions: list[VersionView] = Field(description="newest first")
    created_at: Instant
    updated_at: Instant


@dataclass(frozen=True)
class Page:
    title: str
    owner: str
    version: int
    ready: list[int]  # the versions that can be shown, newest first
    published_at: int
    expires_ms: int | None
    body: bytes


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise PublishError(f"bad name {name!r}: lowercase letters, digits and dashes, at most 63")


def _hash(link: str) -> str:
    return hashlib.sha256(link.encode()).hexdigest()


def _prefix(pub: Publication, version: int) -> str:
    return f"published/{pub.id}/{version}/"


class Publications:
    def __init__(
        self, db: Database, files: ArtifactStore, vault: Vault, renderer: Renderer
    ) -> None:
        self.db, self.files, self.vault, self.renderer = db, files, vault, renderer
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._lock = threading.Lock()

    # reading ----------------------------------------------------------------------------------
    def _own(self, s: Session, who: Reader, name: str) -> Publication:
        pub = s.scalar(
            select(Publication).where(Publication.owner == who.name, Publication.name == name)
        )
        if pub is None:
            raise PublishError(f"publication {name!r} does not exist", 404)
        return pub

    def _view(self, s: Session, pub: Publication) -> PublicationView:
        rows = s.scalars(
            select(PublishedVersion)
            .where(PublishedVersion.publication_id == pub.id)
            .order_by(PublishedVersion.version.desc())
        )
        return PublicationView(
            name=pub.name,
            owner=pub.owner,
            title=pub.title,
            audience=pub.audience,
            space=pub.space,
            url=f"pub/{self.vault.decrypt(pub.link_sealed)}",
            views=pub.views,
            expires_at=from_ms_or_none(pub.expires_ms),
            expired=pub.expires_ms is not None and pub.expires_ms <= now_ms(),
            versions=[
                VersionView(
                    version=v.version,
                    state=v.state,
                    message=v.message,
                    source=v.source,
                    notebook_bytes=v.notebook_bytes,
                    page_bytes=v.page_bytes,
                    created_at=from_ms(v.created_ms),
                    rendered_at=from_ms_or_none(v.rendered_ms),
                )
                for v in rows
            ],
            created_at=from_ms(pub.created_ms),
            updated_at=from_ms(pub.updated_ms),
        )

    def owned(self, who: Reader) -> list[PublicationView]:
        with self.db.session() as s:
            q = select(Publication).where(Publication.owner == who.name).order_by(Publication.name)
            return [self._view(s, p) for p in s.scalars(q)]

    def shared(self, who: Reader) -> list[PublicationView]:
        """Others' publications for every LakeHub user or for a space ``who`` reads (public
        ones are for whoever has their link: not listed), unexpired, with a page to show."""
        with self.db.session() as s:
            access = Access.of(s, who)
            q = (
                select(Publication)
                .where(Publication.owner != who.name, Publication.audience.in_(("hub", "space")))
                .order_by(Publication.updated_ms.desc())
            )
            found = []
            for pub in s.scalars(q):
                if pub.audience == "space" and not access.can_read(space_bucket(pub.space)):
                    continue
                view = self._view(s, pub)
                if not view.expired and any(v.state == "ready" for v in view.versions):
                    found.append(view)
            return found

    def get(self, who: Reader, name: str) -> PublicationView:
        with self.db.session() as s:
            return self._view(s, self._own(s, who, name))

    def snapshot(self, who: Reader, name: str, version: int) -> bytes:
        """A version's notebook as it was published (to its owner)."""
        with self.db.session() as s:
            pub = self._own(s, who, name)
            key = _prefix(pub, version) + "notebook.ipynb"
        try:
            return b"".join(self.files.get(who, home_bucket(who.name), key))
        except ModelsError:
            raise PublishError(f"{name!r} has no version {version}", 404) from None

    # changing ---------------------------------------------------------------------------------
    def _options(self, s: Session, who: Reader, pub: Publication, opts: dict[str, Any]) -> None:
        if "title" in opts:
            title = str(opts["title"] or "").strip()
            if len(title) > 200:
                raise PublishError("a title has at most 200 characters")
            pub.title = title or pub.name
        if "audience" in opts or "space" in opts:
            audience = opts.get("audience", pub.audience)
            space = str(opts.get("space", pub.space if audience == "space" else "") or "")
            if audience not in AUDIENCES:
                raise PublishError(f"audience must be one of {', '.join(AUDIENCES)}")
            if audience == "space":
                if not space or not Access.of(s, who).can_read(space_bucket(space)):
                    raise PublishError(f"you are not in a space named {space!r}")
            elif space:
                raise PublishError("a space is given only with the audience 'space'")
            pub.audience, pub.space = audience, space
        if "expires_ms" in opts:
            expires = opts["expires_ms"]
            if expires is not None and expires <= now_ms():
                raise PublishError("an expiry must lie in the future")
            pub.expires_ms = expires

    def publish(
        self, who: Reader, name: str, body: BinaryIO, size: int, source: str, opts: dict[str, Any]
    ) -> PublicationView:
        """A new version of ``name`` (made on its first publish) from the notebook in ``body``;
        ``opts``: title, audience, space, expires_ms (each as :meth:`update` takes them)."""
        check_name(name)
        if size > MAX_NOTEBOOK:
            raise PublishError(f"a notebook of {size:,} bytes: at most {MAX_NOTEBOOK:,}", 413)
        if not body.read(64).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
            raise PublishError("this is not a notebook: a notebook is a JSON object")
        body.seek(0)
        now = now_ms()
        with self.db.session() as s:
            pub = s.scalar(
                select(Publication).where(Publication.owner == who.name, Publication.name == name)
            )
            if pub is None:
                link = secrets.token_urlsafe(24)
                pub = Publication(
                    owner=who.name,
                    name=name,
                    title=name,
                    audience="hub",
                    space="",
                    link_hash=_hash(link),
                    link_sealed=self.vault.encrypt(link),
                    views=0,
                    created_ms=now,
                    updated_ms=now,
                )
                s.add(pub)
            self._options(s, who, pub, opts)
            pub.updated_ms = now
            s.flush()
            last = s.scalar(
                select(func.max(PublishedVersion.version)).where(
                    PublishedVersion.publication_id == pub.id
                )
            )
            row = PublishedVersion(
                publication_id=pub.id,
                version=(last or 0) + 1,
                source=source[:500],
                state="rendering",
                message="",
                notebook_bytes=size,
                created_ms=now,
            )
            s.add(row)
            s.flush()
            key, row_id, pub_id = _prefix(pub, row.version) + "notebook.ipynb", row.id, pub.id
        try:  # the snapshot goes to the lake after the transaction, not inside it
            self.files.put(who, home_bucket(who.name), key, body)
        except Exception:
            self._forget(row_id, pub_id)
            raise
        self._enqueue(row_id)
        return self.get(who, name)

    def _forget(self, row_id: int, pub_id: int) -> None:
        """A version whose snapshot the lake refused: gone, with its publication if it was
        the first."""
        with self.db.session() as s:
            row = s.get(PublishedVersion, row_id)
            if row is not None:
                s.delete(row)
                s.flush()
            left = s.scalar(select(func.count()).where(PublishedVersion.publication_id == pub_id))
            pub = s.get(Publication, pub_id)
            if not left and pub is not None:
                s.delete(pub)

    def update(self, who: Reader, name: str, opts: dict[str, Any]) -> PublicationView:
        with self.db.session() as s:
            pub = self._own(s, who, name)
            self._options(s, who, pub, opts)
            pub.updated_ms = now_ms()
            return self._view(s, pub)

    def new_link(self, who: Reader, name: str) -> PublicationView:
        """A new link for its page; the old one stops working at once."""
        link = secrets.token_urlsafe(24)
        with self.db.session() as s:
            pub = self._own(s, who, name)
            pub.link_hash, pub.link_sealed = _hash(link), self.vault.encrypt(link)
            pub.updated_ms = now_ms()
            return self._view(s, pub)

    def delete(self, who: Reader, name: str) -> None:
        with self.db.session() as s:
            pub = self._own(s, who, name)
            prefix = f"published/{pub.id}/"
            s.delete(pub)
        self.files.delete_tree(home_bucket(who.name), prefix)

    def remove_owner(self, user: str) -> int:
        """Forget every publication of ``user`` (their lake goes with them); how many."""
        with self.db.session() as s:
            pubs = list(s.scalars(select(Publication).where(Publication.owner == user)))
            for pub in pubs:
                s.delete(pub)
            return len(pubs)

    # pages ------------------------------------------------------------------------------------
    def audience(self, link: str) -> str:
        """Who may open the page of ``link`` (404 if there is none): does it need a login?"""
        with self.db.session() as s:
            pub = s.scalar(select(Publication).where(Publication.link_hash == _hash(link)))
            if pub is None:
                raise PublishError("there is no published page here", 404)
            return pub.audience

    def page(self, link: str, who: Reader | None, version: int | None = None) -> Page:
        with self.db.session() as s:
            pub = s.scalar(select(Publication).where(Publication.link_hash == _hash(link)))
            if pub is None or not self._may_open(s, pub, who):
                raise PublishError("there is no published page here", 404)
            if pub.expires_ms is not None and pub.expires_ms <= now_ms():
                raise PublishError(f"this page expired on {from_ms(pub.expires_ms):%Y-%m-%d}", 410)
            ready = list(
                s.scalars(
                    select(PublishedVersion)
                    .where(
                        PublishedVersion.publication_id == pub.id,
                        PublishedVersion.state == "ready",
                    )
                    .order_by(PublishedVersion.version.desc())
                )
            )
            shown = next((v for v in ready if version in (None, v.version)), None)
            if shown is None:
                raise PublishError(
                    f"version {version} is not published" if version else "not rendered yet",
                    404 if version or not ready else 503,
                )
            owner, key = pub.owner, _prefix(pub, shown.version) + "page.html"
            if who is None or who.name != owner:
                s.execute(
                    update(Publication)
                    .where(Publication.id == pub.id)
                    .values(views=Publication.views + 1)
                )
            found = Page(
                pub.title,
                owner,
                shown.version,
                [v.version for v in ready],
                shown.rendered_ms or shown.created_ms,
                pub.expires_ms,
                b"",
            )
            sha = shown.page_sha256
        try:
            body = b"".join(self.files.get(Reader(owner), home_bucket(owner), key))
        except ModelsError:
            raise PublishError("this page's files are no longer in the lake", 410) from None
        if hashlib.sha256(body).hexdigest() != sha:
            raise PublishError("this page was changed in the lake since it was published", 410)
        return replace(found, body=body)

    def _may_open(self, s: Session, pub: Publication, who: Reader | None) -> bool:
        if pub.audience == "public":
            return True
        if who is None:
            return False
        if who.name == pub.owner or who.admin or pub.audience == "hub":
            return True
        return pub.audience == "space" and Access.of(s, who).can_read(space_bucket(pub.space))

    # rendering --------------------------------------------------------------------------------
    def start(self) -> None:
        """Render what a stopped control plane left rendering."""
        with self.db.session() as s:
            left = s.scalars(
                select(PublishedVersion.id).where(PublishedVersion.state == "rendering")
            )
            for row_id in left:
                self._enqueue(row_id)

    def stop(self) -> None:
        with self._lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            self._queue.put(None)
            worker.join(30)

    def _enqueue(self, row_id: int) -> None:
        self._queue.put(row_id)
        with self._lock:
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="publish", daemon=True)
                self._worker.start()

    def _work(self) -> None:
        while (row_id := self._queue.get()) is not None:
            try:
                self._render(row_id)
            except Exception:  # noqa: BLE001 (recorded on the version; the worker goes on)
                log.exception("rendering published version %s failed", row_id)
                self._finish(row_id, "failed", "an internal error stopped the rendering")

    def _render(self, row_id: int) -> None:
        with self.db.session() as s:
            row = s.get(PublishedVersion, row_id)
            pub = None if row is None else s.get(Publication, row.publication_id)
            if row is None or pub is None or row.state != "rendering":
                return
            owner, prefix = Reader(pub.owner), _prefix(pub, row.version)
        bucket = home_bucket(owner.name)
        with tempfile.TemporaryDirectory(prefix="lakehub-render-") as tmp:
            src, dest = Path(tmp) / "notebook.ipynb", Path(tmp) / "page.html"
            try:
                with src.open("wb") as f:
                    for chunk in self.files.get(owner, bucket, prefix + "notebook.ipynb"):
                        f.write(chunk)
                done = self.renderer.render(src, dest)
                body = dest.read_bytes()
                with dest.open("rb") as f:
                    self.files.put(owner, bucket, prefix + "page.html", f)
            except (PublishError, ModelsError) as err:
                self._finish(row_id, "failed", str(err))
                return
        notes = []
        if done.cut:
            notes.append(f"{done.cut} outputs cut")
        if done.left_out:
            notes.append(f"{done.left_out} outputs or images left out (the page's limits)")
        if done.interactive:
            notes.append(f"{done.interactive} interactive outputs shown as text")
        self._finish(row_id, "ready", "; ".join(notes), body)

    def _finish(self, row_id: int, state: str, message: str, body: bytes = b"") -> None:
        with self.db.session() as s:
            row = s.get(PublishedVersion, row_id)
            if row is None:
                return
            row.state, row.message, row.rendered_ms = state, message, now_ms()
            row.page_bytes, row.page_sha256 = len(body), hashlib.sha256(body).hexdigest()
