"""XEP-0363 HTTP File Upload: slots over XMPP at upload.<domain>, files over HTTP(S)."""

from .component import UploadModule

__all__ = ["UploadModule"]
