"""HTTP headers for every response that carries bytes of a captured message.

A message is content from a stranger. Served on Pat's origin it must never become active there:
a part that says ``text/html`` or ``image/svg+xml`` would otherwise run its script with access
to every message and every API. So every such response

- says ``X-Content-Type-Options: nosniff``, so the browser never guesses a more active type;
- carries a ``Content-Security-Policy`` whose ``sandbox`` directive makes the document a unique
  origin without scripts, even when it is opened in a tab of its own;
- is ``Content-Disposition: attachment`` (a download, never rendered), except raster images on
  a short list, which are shown inline where the UI embeds them; SVG is not on it: it is a
  document that can carry script;
- names the file with RFC 6266's ``filename*`` (UTF-8), beside an ASCII ``filename`` fallback,
  so any name works and none can break the header;
- takes from the message nothing but a media type that has been checked to be ``type/subtype``
  made of token characters. No header of a part is ever copied into the response.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

# Shown inline where the UI embeds them (cid: images); decoders for these formats run no script.
INLINE_RASTER_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp",
                                 "image/avif", "image/bmp"})
OPAQUE_TYPE = "application/octet-stream"
# A document loaded from one of these responses can do nothing: no script, no plugin, no form,
# no fetch, no frame; it is a unique origin (sandbox without allow-same-origin).
MESSAGE_BYTES_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox"

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(rf"^{_TOKEN}/{_TOKEN}$")
_FALLBACK_UNSAFE = re.compile(r'[^A-Za-z0-9 !#$&+,.=@^_`{}~()\[\]-]')


def safe_media_type(declared: str | None) -> str:
    """``declared`` lower-cased if it is a plain ``type/subtype``; the opaque type otherwise
    (parameters, line breaks and anything else a header could carry are dropped)."""
    value = (declared or "").strip().lower()
    return value if _MEDIA_TYPE.match(value) else OPAQUE_TYPE


def content_disposition(disposition: str, filename: str | None) -> str:
    """``attachment`` or ``inline`` with the filename as RFC 6266 wants it: ``filename*`` in
    UTF-8 percent-encoding, and an ASCII ``filename`` for old clients."""
    if not filename:
        return disposition
    name = "".join(c for c in filename if unicodedata.category(c)[0] != "C").strip()
    name = name.replace("/", "_").replace("\\", "_")[:255] or "download"
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    fallback = _FALLBACK_UNSAFE.sub("_", ascii_name).strip() or "download"
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def message_bytes_headers(media_type: str | None, filename: str | None = None, *,
                          inline_images: bool = True) -> dict[str, str]:
    """The headers of a response carrying bytes of a message: its type (checked), the
    disposition (attachment unless a listed raster image and ``inline_images``), ``nosniff``
    and the sandboxing policy."""
    kind = safe_media_type(media_type)
    inline = inline_images and kind in INLINE_RASTER_TYPES
    return {"Content-Type": kind,
            "Content-Disposition": content_disposition("inline" if inline else "attachment",
                                                       filename),
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": MESSAGE_BYTES_POLICY,
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store"}
