"""The NCIP 2.02 responder at ``/ncip`` (ncip.md Part A): a thin twisted.web adapter over the register."""

from gateway.ncip.resource import NCIPResource
from gateway.ncip.responder import Answer, Responder

__all__ = ["NCIPResource", "Responder", "Answer"]
