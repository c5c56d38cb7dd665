"""Who may read or write an experiment or a registered model: whoever may read or write its
bucket (its owner's home bucket, or a space's: the space's grants), as in the lake itself.

Names are per owner. A name as a person gives it is ``name`` (their own) or ``owner.name``, the
owner being a user or a space they can see (otherwise the dot is part of their own name: MLflow's
client refuses ``:`` and ``/`` in model names); answers name things the same way, relative to
who asks. A name whose owner the caller cannot see answers as one that does not exist.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from lakehub.server.identity.users import home_bucket, shared_access, space_bucket
from lakehub.server.models.base import ModelsError, Reader

SEP = "."  # as MLflow's own three-level names (catalog.schema.model): no ":" nor "/"
HOME_SUFFIX = "-home"
SPACE_PREFIX = "space-"


class Access:
    """One caller's view: their buckets' access (``read`` | ``write``). The spaces' grants are
    read when first needed: a caller acting on their own bucket needs none of them."""

    def __init__(self, s: Session, who: Reader) -> None:
        self.who = who
        self._session = s
        self._buckets: dict[str, str] | None = None

    @classmethod
    def of(cls, s: Session, who: Reader) -> Access:
        return cls(s, who)

    @property
    def buckets(self) -> dict[str, str]:
        if self._buckets is None:
            found = dict(shared_access(self._session).get(self.who.name, {}))
            found[home_bucket(self.who.name)] = "write"
            self._buckets = found
        return self._buckets

    def level(self, bucket: str) -> str | None:
        if bucket == home_bucket(self.who.name):
            return "write"
        return self.buckets.get(bucket) or ("admin" if self.who.admin else None)

    def can_read(self, bucket: str) -> bool:
        return self.level(bucket) is not None

    def can_write(self, bucket: str) -> bool:
        return self.level(bucket) in ("write", "admin")

    def readable(self) -> list[str] | None:
        """The buckets this caller reads (``None``: every one, for an administrator)."""
        return None if self.who.admin else sorted(self.buckets)

    def check_write(self, bucket: str, what: str) -> None:
        if not self.can_read(bucket):
            raise ModelsError(f"{what} does not exist", "RESOURCE_DOES_NOT_EXIST")
        if not self.can_write(bucket):
            raise ModelsError(f"you may read {what} but not change it", "PERMISSION_DENIED")

    # names --------------------------------------------------------------------------------
    def shown(self, bucket: str, name: str) -> str:
        """``name`` as this caller says it: bare when it is theirs."""
        if bucket == home_bucket(self.who.name):
            return name
        return f"{owner_of(bucket)}{SEP}{name}"

    def _owned(self, given: str) -> tuple[list[str], str] | None:
        """``owner.name`` -> (the owner's buckets this caller reads, name); ``None`` when the
        part before the first dot is no owner this caller knows (then it is part of the name)."""
        owner, sep, name = given.partition(SEP)
        if not sep or not name:
            return None
        if owner == self.who.name:
            return [home_bucket(owner)], name
        seen = [b for b in (home_bucket(owner), space_bucket(owner)) if self.can_read(b)]
        return (seen, name) if seen else None

    def candidates(self, given: str) -> tuple[list[str], str]:
        """The buckets a name may be in for this caller, theirs first, and the bare name."""
        owned = self._owned(given)
        if owned is not None:
            return owned
        return [home_bucket(self.who.name), *sorted(self.buckets)], given

    def target(self, given: str, what: str) -> tuple[str, str]:
        """Where a new ``given`` goes: (bucket, bare name); the caller must write there."""
        owned = self._owned(given)
        if owned is None:
            return home_bucket(self.who.name), given
        buckets, name = owned
        if len(buckets) > 1:
            raise ModelsError(
                f"{given.partition(SEP)[0]!r} is both a user and a space: ask an administrator"
            )
        if not self.can_write(buckets[0]):
            raise ModelsError(
                f"you may read {owner_of(buckets[0])}'s {what}s but not create one",
                "PERMISSION_DENIED",
            )
        return buckets[0], name


def owner_of(bucket: str) -> str:
    if bucket.endswith(HOME_SUFFIX):
        return bucket[: -len(HOME_SUFFIX)]
    return bucket.removeprefix(SPACE_PREFIX)
