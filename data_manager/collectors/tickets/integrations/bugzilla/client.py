"""Bugzilla's REST API over the shared `ApiClient`: auth, error bodies, batched reads, id-cursor listing.

* Auth: upstream 5.0/5.2 read the key only from the `api_key` query parameter or a JSON body (a header
  is ignored and the request quietly reads as anonymous); bugzilla.mozilla.org also takes the
  `X-BUGZILLA-API-KEY` header. `api_key_in="query"` (default) sends it as the parameter on reads and in
  the body on writes; `"header"` sends only the header (bmo). The key never reaches a log line, an
  error text or a repr: `ApiClient` redacts it (urllib3's debug URLs included) and every exception
  leaving here is rebuilt from redacted text.
* Errors: `{"error":true,"code":N,"message":..}` becomes a `BugzillaError` naming the code, of the
  pipeline's class for its HTTP status (404 → not found, 429/5xx → transient, else permanent).
* Reads are batched: `GET /rest/bug?id=1,2,..` for many bugs, `GET /rest/bug/1/comment?ids=2&ids=3` for
  the comments of many bugs, so a resync costs two requests per page of bugs, not two per bug.
* Listing pages by `order=bug_id` with an id cursor (`f1=bug_id&o1=greaterthan&v1=<last id>`): offset
  paging skips bugs when others change mid-listing; an id cursor cannot.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import requests

from data_manager.collectors.tickets.errors import CredentialsRefused, IntegrationError, PermanentError, TransientError
from data_manager.collectors.tickets.http import TRANSIENT_STATUSES, ApiClient, NotFoundError, redact
from data_manager.collectors.tickets.integrations.bugzilla.mapping import bz_time

API_KEY_HEADER = "X-BUGZILLA-API-KEY"
API_KEY_PLACES = ("query", "header")
BATCH_SIZE = 100  # ids per batched read: keeps URLs short (~1 kB) and answers small
NOT_FOUND_CODES = frozenset({101, 102})  # does not exist / not authorized to see it
REFUSED_CODES = frozenset({306, 410, 505})  # bad key / login required / anonymous user lookup refused


class BugzillaError(IntegrationError):
    """An error Bugzilla answered with; `code` is Bugzilla's error code (101, 306, ...)."""

    code: int | None = None


class BugzillaPermanentError(BugzillaError, PermanentError):
    pass


class BugzillaNotFound(BugzillaError, NotFoundError):
    pass


class BugzillaTransientError(BugzillaError, TransientError):
    pass


def error_from(status: int, body: Any, where: str, retry_after: float | None = None) -> IntegrationError:
    """The pipeline error for one error answer (`where` is a redacted "METHOD /path")."""
    code = body.get("code") if isinstance(body, Mapping) else None
    message = str(body.get("message") or "").strip() if isinstance(body, Mapping) else ""
    text = (
        f"Bugzilla error {code} (HTTP {status}) on {where}: {message}"
        if code is not None
        else (f"Bugzilla answered HTTP {status} on {where}" + (f": {message}" if message else ""))
    )
    cls: type[BugzillaError]
    if code in REFUSED_CODES:
        refused = CredentialsRefused(f"the Bugzilla API key was refused: {text}", status=401)
        refused.code = code  # type: ignore[attr-defined]
        return refused
    if code in NOT_FOUND_CODES or (status == 404 and code is None):  # not 404/51 (no such status, user, ...)
        cls = BugzillaNotFound
    elif status in TRANSIENT_STATUSES:
        cls = BugzillaTransientError
    else:
        cls = BugzillaPermanentError
    error = cls(text, status=status, retry_after=retry_after)
    error.code = code if isinstance(code, int) else None
    return error


class _BugzillaApiClient(ApiClient):
    """`ApiClient` whose error answers carry Bugzilla's error code and message.

    A refused key is 400/306 and a request read as anonymous 401/410: both tell the credential proof's
    listeners, as any 401 does, so the pipeline asks again before it trusts a "not found".
    """

    def _error(self, method: str, url: str, response: requests.Response, wait: float | None) -> IntegrationError:
        try:
            body = response.json()
        except ValueError:
            body = {"message": response.text.strip()[:200] or response.reason}
        error = error_from(response.status_code, body, self.redact(f"{method} {_path_of(url)}"), wait)
        if response.status_code == 401 or isinstance(error, CredentialsRefused):
            self.notify_unauthorized()
        return error


def _path_of(url: str) -> str:
    return url.split("?", 1)[0]


class BugzillaClient:
    """The calls the integration makes, each with the key sent where the server accepts it."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        api_key_in: str = "query",
        timeout: float = 30.0,
        max_retries: int = 4,
        page_size: int = 500,
        client_options: Mapping[str, Any] | None = None,
    ) -> None:
        if api_key_in not in API_KEY_PLACES:
            raise ValueError(f"api_key_in must be one of {', '.join(API_KEY_PLACES)}")
        self.api_key_in = api_key_in
        self.page_size = page_size
        self._key = api_key
        headers = {API_KEY_HEADER: api_key} if api_key_in == "header" else {}
        self.api = _BugzillaApiClient(
            base_url,
            headers=headers,
            timeout=timeout,
            max_retries=max_retries,
            secrets=(api_key,),
            **dict(client_options or {}),
        )

    @property
    def request_count(self) -> int:
        return self.api.request_count

    # -- plumbing ----------------------------------------------------------------------------------------
    def call(
        self, method: str, path: str, *, params: Sequence[tuple[str, Any]] = (), body: Mapping[str, Any] | None = None
    ) -> Any:
        """One request; the key goes in the query (reads) or the JSON body (writes) unless sent as a header."""
        query = list(params)
        payload = dict(body) if body is not None else None
        if self.api_key_in == "query":
            if payload is not None:
                payload["api_key"] = self._key  # writes: in the body, out of every URL
            else:
                query.append(("api_key", self._key))
        try:
            answer = self.api.request_json(method, path, params=query or None, json=payload)
        except IntegrationError:
            raise
        except requests.RequestException as exc:  # anything else requests raises quotes the URL: rebuild it
            raise TransientError(redact(f"{method} {path}: {type(exc).__name__}: {exc}", (self._key,))) from None
        if isinstance(answer, Mapping) and answer.get("error") is True:  # an error in a 2xx (old JSON-RPC habits)
            raise error_from(200, answer, f"{method} {path}")
        return answer

    def close(self) -> None:
        self.api.close()

    def __repr__(self) -> str:
        return f"<BugzillaClient {self.api.base_url} key in {self.api_key_in}>"

    # -- credentials ---------------------------------------------------------------------------------------
    def verify(self) -> None:
        """Fail with `CredentialsRefused` unless the key authenticates (a request read as anonymous fails).

        Upstream has no whoami: a user lookup by `match` is refused to anonymous callers and answers
        anyone logged in. bugzilla.mozilla.org has `/rest/whoami`, which is what header auth is for.
        """
        if self.api_key_in == "header":
            try:
                who = self.call("GET", "rest/whoami")
            except BugzillaError as exc:
                if exc.status != 404:
                    raise
                raise CredentialsRefused(
                    "the Bugzilla API key reads as anonymous: this server has no /rest/whoami, so it is upstream "
                    "Bugzilla, which ignores the X-BUGZILLA-API-KEY header; set api_key_in: query "
                    f"({exc})",
                    status=401,
                ) from None
            if not isinstance(who, Mapping) or not who.get("id"):
                raise CredentialsRefused(
                    "the Bugzilla API key reads as anonymous (/rest/whoami named no user)", status=401
                )
            return
        self.call("GET", "rest/user", params=[("match", "@"), ("limit", 1), ("include_fields", "id")])

    # -- reading -------------------------------------------------------------------------------------------
    def bugs(self, ids: Sequence[int | str]) -> dict[str, dict[str, Any]]:
        """The bugs among `ids` the key can see, by id (a search: missing and invisible ids are left out)."""
        found: dict[str, dict[str, Any]] = {}
        for batch in _batches(ids):
            answer = self.call("GET", "rest/bug", params=[("id", ",".join(batch))])
            for bug in _list(answer, "bugs"):
                found[str(bug.get("id"))] = bug
        return found

    def comments(self, ids: Sequence[int | str]) -> dict[str, list[dict[str, Any]]]:
        """Every comment of each bug in `ids`, oldest first, one request per batch of bugs.

        The whole batch fails when one bug vanished or became invisible since it was listed (101/102):
        then the bugs still visible are asked for again, and the others get no entry.
        """
        found: dict[str, list[dict[str, Any]]] = {}
        for batch in _batches(ids):
            for attempt in range(3):
                try:
                    found.update(self._comments_batch(batch))
                    break
                except BugzillaNotFound:
                    if attempt == 2:
                        raise
                    visible = self.bugs(batch)
                    batch = [bug_id for bug_id in batch if bug_id in visible]
                    if not batch:
                        break
        return found

    def _comments_batch(self, batch: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        first, rest = batch[0], batch[1:]
        answer = self.call("GET", f"rest/bug/{first}/comment", params=[("ids", bug_id) for bug_id in rest])
        bugs = answer.get("bugs") if isinstance(answer, Mapping) else None
        if not isinstance(bugs, Mapping):
            raise TransientError(f"Bugzilla answered GET /rest/bug/{first}/comment without a 'bugs' object")
        return {
            str(bug_id): [c for c in (entry or {}).get("comments") or [] if isinstance(c, dict)]
            for bug_id, entry in bugs.items()
            if isinstance(entry, Mapping)
        }

    def changed_pages(self, since: datetime | None, products: Sequence[str] = ()) -> Iterator[list[dict[str, Any]]]:
        """Pages of full bugs changed at or after `since` (inclusive), by ascending id, in `products`.

        A page shorter than `page_size` is the last: an unchanged system costs one request.
        """
        after = 0
        while True:
            params: list[tuple[str, Any]] = [("order", "bug_id"), ("limit", self.page_size)]
            if since is not None:
                params.append(("last_change_time", bz_time(since)))
            params += [("product", product) for product in products]
            if after:
                params += [("f1", "bug_id"), ("o1", "greaterthan"), ("v1", after)]
            page = [bug for bug in _list(self.call("GET", "rest/bug", params=params), "bugs") if bug.get("id")]
            page = [bug for bug in page if int(bug["id"]) > after]  # never step back, whatever the server did
            if page:
                yield page
            if len(page) < self.page_size:
                return
            after = max(int(bug["id"]) for bug in page)

    def statuses(self) -> dict[str | None, tuple[bool, tuple[str, ...]]]:
        """The server's status workflow: status → (is open, statuses it may change to); `None` → new bugs."""
        answer = self.call("GET", "rest/field/bug/bug_status")
        workflow: dict[str | None, tuple[bool, tuple[str, ...]]] = {}
        for field_ in _list(answer, "fields"):
            for value in field_.get("values") or []:
                if isinstance(value, Mapping):
                    targets = tuple(
                        str(t.get("name")) for t in value.get("can_change_to") or [] if isinstance(t, Mapping)
                    )
                    workflow[value.get("name")] = (bool(value.get("is_open")), targets)
        return workflow


def _batches(ids: Sequence[int | str]) -> Iterator[list[str]]:
    unique = list(dict.fromkeys(str(i).strip() for i in ids if str(i).strip()))
    for start in range(0, len(unique), BATCH_SIZE):
        yield unique[start : start + BATCH_SIZE]


def _list(answer: Any, key: str) -> list[dict[str, Any]]:
    if not isinstance(answer, Mapping) or not isinstance(answer.get(key), list):
        raise TransientError(f"Bugzilla answered without a '{key}' list")
    return [item for item in answer[key] if isinstance(item, dict)]
