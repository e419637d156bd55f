"""Salesforce Service Cloud (Cases and CaseComments) as a ticket system; see backend.py."""

from data_manager.collectors.tickets.integrations.salesforce.backend import CommentTooLong, SalesforceBackend

__all__ = ["CommentTooLong", "SalesforceBackend"]
