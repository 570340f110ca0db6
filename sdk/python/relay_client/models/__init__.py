""" Contains all the data models used in inputs/outputs """

from .action_list import ActionList
from .action_view import ActionView
from .action_view_params_schema import ActionViewParamsSchema
from .api_key_list import ApiKeyList
from .api_key_view import ApiKeyView
from .audit_page import AuditPage
from .audit_record_view import AuditRecordView
from .audit_verification import AuditVerification
from .authorize_response import AuthorizeResponse
from .check import Check
from .connection_list import ConnectionList
from .connection_view import ConnectionView
from .create_api_key import CreateApiKey
from .created_api_key import CreatedApiKey
from .deletion_view import DeletionView
from .error_body import ErrorBody
from .error_envelope import ErrorEnvelope
from .execute_body import ExecuteBody
from .execute_response import ExecuteResponse
from .execute_response_result import ExecuteResponseResult
from .health import Health
from .import_connection import ImportConnection
from .import_connection_service_account_type_0 import ImportConnectionServiceAccountType0
from .link_status import LinkStatus
from .preview_body import PreviewBody
from .preview_body_params import PreviewBodyParams
from .preview_response import PreviewResponse
from .preview_response_rendered import PreviewResponseRendered
from .provider_list import ProviderList
from .provider_view import ProviderView
from .readiness import Readiness
from .readiness_checks_type_0 import ReadinessChecksType0
from .role import Role
from .rotated_webhook_secret import RotatedWebhookSecret
from .stats import Stats
from .stats_bucket import StatsBucket
from .token_view import TokenView
from .update_api_key import UpdateApiKey
from .webhook_secret import WebhookSecret

__all__ = (
    "ActionList",
    "ActionView",
    "ActionViewParamsSchema",
    "ApiKeyList",
    "ApiKeyView",
    "AuditPage",
    "AuditRecordView",
    "AuditVerification",
    "AuthorizeResponse",
    "Check",
    "ConnectionList",
    "ConnectionView",
    "CreateApiKey",
    "CreatedApiKey",
    "DeletionView",
    "ErrorBody",
    "ErrorEnvelope",
    "ExecuteBody",
    "ExecuteResponse",
    "ExecuteResponseResult",
    "Health",
    "ImportConnection",
    "ImportConnectionServiceAccountType0",
    "LinkStatus",
    "PreviewBody",
    "PreviewBodyParams",
    "PreviewResponse",
    "PreviewResponseRendered",
    "ProviderList",
    "ProviderView",
    "Readiness",
    "ReadinessChecksType0",
    "Role",
    "RotatedWebhookSecret",
    "Stats",
    "StatsBucket",
    "TokenView",
    "UpdateApiKey",
    "WebhookSecret",
)
