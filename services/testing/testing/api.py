"""HTTP API of the testing service, under /testing."""

from fastapi import APIRouter

router = APIRouter(prefix="/testing", tags=["testing"])
