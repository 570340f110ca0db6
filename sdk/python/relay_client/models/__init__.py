""" Contains all the data models used in inputs/outputs """

from .authorize_response import AuthorizeResponse
from .check import Check
from .connection_list import ConnectionList
from .connection_view import ConnectionView
from .deletion_view import DeletionView
from .error_body import ErrorBody
from .error_envelope import ErrorEnvelope
from .health import Health
from .import_connection import ImportConnection
from .link_status import LinkStatus
from .provider_list import ProviderList
from .provider_view import ProviderView
from .readiness import Readiness
from .readiness_checks import ReadinessChecks
from .token_view import TokenView

__all__ = (
    "AuthorizeResponse",
    "Check",
    "ConnectionList",
    "ConnectionView",
    "DeletionView",
    "ErrorBody",
    "ErrorEnvelope",
    "Health",
    "ImportConnection",
    "LinkStatus",
    "ProviderList",
    "ProviderView",
    "Readiness",
    "ReadinessChecks",
    "TokenView",
)
