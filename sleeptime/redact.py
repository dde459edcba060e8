"""Printable forms of connection URLs: passwords and query-string secrets hidden.

Every URL that goes into a message, a log line or CLI output passes through
:func:`redact_url`; every message that may quote a URL (a driver's exception text)
passes through :func:`redact_text`. An error raised because of a driver's exception
takes :func:`redacted_cause` as its cause, not the driver's exception itself, so a
printed traceback never shows the driver's message unredacted.

Libraries disagree on where credentials end when a password holds a raw ``@``:
SQLAlchemy's ``make_url`` splits at the first ``@`` (``u:p@ss@host`` -> host
``ss@host``) while urllib and redis-py split at the last one (password ``p@ss``).
Whatever both could read as credentials is hidden. In the ordinary case (both
agree) the output is SQLAlchemy's own ``render_as_string(hide_password=True)``.
A string that neither parses is never echoed: only its scheme is named.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, unquote_plus, urlsplit

from sqlalchemy.engine import make_url

HIDDEN = "***"

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://", re.S)
#: Query parameters whose values are hidden (case-insensitive substring match):
#: ``password``, ``sslpassword``, ``passwd``, ``pwd``, ``token``, ``secret``,
#: ``api_key``, ``sslkey``, ``auth``, ``credentials``, ``sig``/``signature``...
_SECRET_KEY = re.compile(r"pass|pwd|token|secret|key|auth|credential|sig", re.I)
#: Secrets shorter than this are hidden inside URLs only, not searched for in free
#: text (a one-letter password would otherwise blank out every occurrence of it).
_MIN_SCRUB = 4


def is_secret_param(name: str) -> bool:
    """Whether a query parameter carries a secret (its value is hidden)."""
    return bool(_SECRET_KEY.search(name))


def redact_url(url: object) -> str:
    """``url`` with its password and secret query parameters replaced by ``***``.

    Never returns a substring of a secret; an unparseable URL comes back as
    ``"unparseable <scheme> URL (hidden)"``.
    """
    if url is None:
        return "(no URL)"
    if not isinstance(url, str):
        # A SQLAlchemy URL object: render the string it stands for, then redact that.
        render = getattr(url, "render_as_string", None)
        url = render(hide_password=False) if callable(render) else str(url)
    parts = _split(url)
    if parts is None:
        m = _SCHEME.match(url)
        scheme = f"{m.group(1)} " if m and len(m.group(1)) <= 32 else ""
        return f"unparseable {scheme}URL (hidden)"
    scheme, creds, tail, sa_agrees = parts
    host_path, qmark, query = tail.partition("?")
    masked = _mask_query(query) if qmark else ""
    if sa_agrees:
        try:
            sa_url = make_url(f"{scheme}://{creds + '@' if creds is not None else ''}{host_path}")
            rendered = sa_url.render_as_string(hide_password=True)
            return f"{rendered}?{masked}" if qmark else rendered
        except Exception:  # fall through to the plain rebuild below
            pass
    out = f"{scheme}://"
    if creds is not None:
        user, colon, _password = creds.partition(":")
        out += f"{user}:{HIDDEN}@" if colon else f"{user}@"
    out += host_path
    return f"{out}?{masked}" if qmark else out


def redact_text(text: object, *urls: object) -> str:
    """``str(text)`` with each of ``urls`` (raw) replaced by its redacted form and any
    password or secret query value of them replaced by ``***``: for driver error
    messages that may quote what they were given."""
    out = str(text)
    for url in urls:
        if not isinstance(url, str) or not url:
            continue
        out = out.replace(url, redact_url(url))
        for secret in sorted(_secrets(url), key=len, reverse=True):
            if len(secret) >= _MIN_SCRUB:
                out = out.replace(secret, HIDDEN)
    return out


class RedactedError(Exception):
    """Stands in for a driver's exception as the cause of one of ours: the driver's
    type and its message with every secret of the URLs hidden."""


def redacted_cause(exc: BaseException, *urls: object) -> RedactedError:
    """``raise Ours(...) from redacted_cause(exc, url)``: a traceback then names the
    driver's error (type, redacted message) without its unredacted text, which the
    original exception (and its own cause chain) keeps."""
    kind = type(exc)
    return RedactedError(f"{kind.__module__}.{kind.__qualname__}: {redact_text(exc, *urls)}")


def url_scheme(url: str) -> str | None:
    """The scheme of ``url`` (``redis``, ``postgresql+psycopg``), or None."""
    m = _SCHEME.match(url)
    return m.group(1).lower() if m else None


# -- internals ----------------------------------------------------------------------


def _split(url: str) -> tuple[str, str | None, str, bool] | None:
    """(scheme, credentials or None, everything after them, whether SQLAlchemy's
    parse puts the credentials' end at the same ``@``); None if unparseable."""
    m = _SCHEME.match(url)
    if m is None:
        return None
    try:
        sa = make_url(url)
        netloc = urlsplit(url).netloc
    except Exception:
        return None
    scheme, rest = m.group(1), url[m.end() :]
    # urllib / redis-py: the last '@' of the network location (which ends at / ? #)
    by_urllib = netloc.rfind("@") if rest.startswith(netloc) else -1
    # SQLAlchemy: the first '@', when its pattern matched a user part at all
    by_sa = rest.find("@") if (sa.username is not None or sa.password is not None) else -1
    end = max(by_urllib, by_sa)
    if end < 0:
        return scheme, None, rest, True
    return scheme, rest[:end], rest[end + 1 :], by_sa == end


def _mask_query(query: str) -> str:
    fragment = ""
    if "#" in query:
        query, _, _ = query.partition("#")
        fragment = "#" + HIDDEN
    pieces = []
    for piece in query.split("&"):
        key, eq, _value = piece.partition("=")
        if eq and is_secret_param(unquote_plus(key)):
            pieces.append(f"{key}={HIDDEN}")
        else:
            pieces.append(piece)
    return "&".join(pieces) + fragment


def _secrets(url: str) -> set[str]:
    """Every string that could be a secret in ``url``, raw and percent-decoded."""
    sensitive: set[str] = set()
    parts = _split(url)
    if parts is None:
        # Unparseable: whatever sits between '://' and the last '@' may be credentials.
        m = _SCHEME.match(url)
        rest = url[m.end() :] if m else url
        creds = rest.rpartition("@")[0]
        if creds:
            sensitive |= {creds, creds.partition(":")[2]}
        tail = rest
    else:
        _scheme, creds_or_none, tail, sa_agrees = parts
        if creds_or_none is not None:
            password = creds_or_none.partition(":")[2]
            sensitive.add(password)
            if not sa_agrees:
                # Drivers given SQLAlchemy's reading quote its "host", which starts with
                # the rest of the password ("ss@db" of "p@ss@db"): scrub the pieces too.
                sensitive |= set(re.split(r"[@/?#:]", password))
                sensitive.add(str(make_url(url).host or ""))
    _host, qmark, query = tail.partition("?")
    if qmark:
        for piece in query.split("&"):
            key, eq, value = piece.partition("=")
            if eq and is_secret_param(unquote_plus(key)):
                sensitive.add(value)
    return {v for s in sensitive if s for v in (s, unquote(s), unquote_plus(s)) if v}
