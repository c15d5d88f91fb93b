"""HTTP API of the registry service, under /registry."""

from fastapi import APIRouter

router = APIRouter(prefix="/registry", tags=["registry"])
