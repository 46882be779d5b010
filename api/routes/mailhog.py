"""MailHog-compatible API: /api/v1 and /api/v2 (being written)."""

from fastapi import APIRouter

router = APIRouter(tags=["mailhog"])
