"""HTTP routes, one module per resource; ``router`` gathers them."""

from __future__ import annotations

from fastapi import APIRouter

from . import checkpoints, health, studies, trials

router = APIRouter()
router.include_router(health.router)
router.include_router(studies.router)
router.include_router(trials.router)
router.include_router(checkpoints.router)

__all__ = ["router"]
