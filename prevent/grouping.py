"""Grouping reports of one event into an incident cluster."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from prevent.classification import Classification
from prevent.contracts import GlobalIncident, stable_id


async def assign_cluster(session: AsyncSession, incident: GlobalIncident, c: Classification) -> str:
    """Walking skeleton: every incident is its own cluster (replaced by issue 4's grouping)."""
    return stable_id("clu", incident.incident_id)
