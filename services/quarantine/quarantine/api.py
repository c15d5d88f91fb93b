"""HTTP API of the quarantine service, under /quarantine."""

from fastapi import APIRouter

router = APIRouter(prefix="/quarantine", tags=["quarantine"])
