"""HTTP API of the dashboard service, under /dashboard."""

from fastapi import APIRouter

router = APIRouter(prefix="/dashboard", tags=["dashboard"])
